"""The worker side: device probing, job supervision and the training child."""
