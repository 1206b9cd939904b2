"""The edge configuration that maps every device named in the device-samples fixture set to one of ours."""

from __future__ import annotations

from typing import Any

Z2M_DEVICES: dict[str, tuple[str, str]] = {
    "bulb_color": ("z2m-bulb-color", "other"),
    "remote": ("z2m-remote", "other"),
    "Bathroom motion": ("z2m-bathroom-motion", "other"),
    "Machine laver": ("z2m-washer-plug", "electrical"),
    "dist_board_breaker": ("z2m-dist-breaker", "electrical"),
    "Sensor Garage Bosch Motion Door": ("z2m-garage-motion", "other"),
    "Soil 3": ("z2m-soil-3", "other"),
    "0x005043c95f277c80": ("z2m-leak-1", "water_leak"),
    "hallway_smoke": ("z2m-hallway-smoke", "smoke"),
    "0x0015bc00310095bd": ("z2m-frient-smoke", "smoke"),
    "kitchen_smoke": ("z2m-kitchen-smoke", "smoke"),
    "Schlafzimmer Rauchmelder": ("z2m-bedroom-smoke", "smoke"),
    "<heiman_smoke>": ("z2m-heiman-smoke", "smoke"),
    "0x00158d000202eff6": ("z2m-xiaomi-smoke", "smoke"),
    "<master_room_sos>": ("z2m-master-sos", "sos"),
    "0xa4c13899607febd1": ("z2m-tuya-sos", "sos"),
    "0x847127fffe0542eb": ("z2m-ts0215a-sos", "sos"),
    "0x842e14fffee5488f": ("z2m-heiman-sos", "sos"),
}


def _devices(table: dict[str, tuple[str, str]], **extra: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: {"id": i, "kind": kind} for k, (i, kind) in table.items()}
    for k, more in extra.items():
        out[k] = {**out.get(k, {}), **more}
    return out


def sample_config(gateway: str = "gw-samples") -> dict[str, Any]:
    return {
        "gateway": gateway,
        "adapters": [
            {"dialect": "zigbee2mqtt", "prefix": "zigbee2mqtt", "devices": _devices(Z2M_DEVICES)},
            {"dialect": "zigbee2mqtt", "prefix": "zigbee", "devices": _devices({"smoke_detector": ("z2m-old-smoke", "smoke")})},
            {"dialect": "zigbee2mqtt", "prefix": "myzigbee", "devices": _devices({"porch_smoke": ("z2m-porch-smoke", "smoke")})},
            {
                "dialect": "tasmota",
                "prefix": "tele",
                "stat_prefix": "stat",
                "devices": _devices(
                    {
                        "tasmota_XXXXXX": ("tas-plug", "electrical"),
                        "compressor": ("tas-compressor", "electrical"),
                        "tasmota": ("tas-adc", "electrical"),
                        "ds1820": ("tas-cable-probe", "electrical"),
                        "shelly25": ("tas-shelly25", "electrical"),
                        "pow1": ("tas-pow1", "electrical"),
                    },
                    shelly25={"channels": 2},
                ),
            },
            {
                "dialect": "shelly",
                "devices": _devices(
                    {
                        "shellyplus1pm-a8032ab13004": ("shelly-1pm-a", "electrical"),
                        "ogemray25a-70af09f0ab7c": ("shelly-ogemray", "electrical"),
                        "shellyplusplugs-80646fd031f8": ("shelly-plug-s", "electrical"),
                        "shellyplus1pm-d4d4da0a4ca0": ("shelly-1pm-d", "electrical"),
                        "shelly1minig3-54320464a1d0": ("shelly-mini-g3", "other"),
                        "shellyplussmoke-80646fd1xxyy": ("shelly-smoke", "smoke"),
                    }
                ),
            },
            {
                "dialect": "frigate",
                "prefix": "frigate",
                "devices": _devices(
                    {
                        "front_door": ("cam-front-door", "camera"),
                        "back_door": ("cam-back-door", "camera"),
                        "garage": ("cam-garage", "camera"),
                        "gates": ("cam-gates", "camera"),
                    }
                ),
            },
            {
                "dialect": "esphome",
                "devices": {
                    "livingroom": {"id": "esp-livingroom", "kind": "other"},
                    "kitchen-node": {
                        "id": "esp-kitchen",
                        "kind": "electrical",
                        "entities": {
                            "binary_sensor/smoke_detector": {"device": "esp-kitchen-smoke", "kind": "smoke", "event": "smoke"},
                            "sensor/mains_voltage": {"metric": "mains_voltage_v"},
                        },
                    },
                    # The sample's meaning says kWh; a unit is declared (or announced by discovery), never guessed from a word.
                    "attic-powerwall": {
                        "id": "esp-attic-powerwall",
                        "kind": "electrical",
                        "entities": {"sensor/firstfloor_inverter_energy_yesterday": {"metric": "firstfloor_inverter_energy_yesterday_wh", "scale": 1000}},
                    },
                    "presence-camerina": {
                        "id": "esp-presence",
                        "kind": "other",
                        "entities": {"sensor/luminosit___camerina": {"metric": "illuminance_lux"}},
                    },
                },
            },
        ],
    }
