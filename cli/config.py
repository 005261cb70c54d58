"""``farm config``: the effective settings, secrets masked, and where they were read from."""

from __future__ import annotations

from cli.common import BrokerOption, JsonOption, console, friendly_errors, print_json, settings


@friendly_errors
def config_cmd(broker: str = BrokerOption, as_json: bool = JsonOption) -> None:
    """Show the effective settings (flags > FARM_* variables > config file > defaults), secrets masked."""
    from farm.settings import config_path

    shown = settings(broker_url=broker).shown()
    path = config_path()
    if as_json:
        print_json({"config_file": str(path), "config_file_exists": path.exists(), "settings": shown})
        return
    console.print(f"config file: {path} ({'found' if path.exists() else 'absent'})", markup=False, highlight=False)
    for key, value in shown.items():
        console.print(f"  {key} = {value}", markup=False, highlight=False)  # the user's values: markup not read
