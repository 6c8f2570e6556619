"""`liaison import requests` on 12345 hotline exports: good rows kept, each bad one reported with its line,
nothing imported twice, UTF-8 and GB18030 alike."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from deploy.seed import seed_synthetic
from tenants.db import Database
from tests.deploy.conftest import liaison

ENGLISH = ["external_id", "submitted_at", "category", "description", "address", "lon", "lat", "crs"]
ENGLISH += ["contact_name", "contact_phone"]
CHINESE = [
    "工单编号",
    "来电时间",
    "诉求类别",
    "诉求内容",
    "地址",
    "经度",
    "纬度",
    "坐标系",
    "联系人",
    "联系电话",
]


@pytest.fixture(scope="module")
async def tenant(database: Database, owner_dsn: str) -> tuple[str, float, float]:
    """The tenant, and a point inside one of its grid cells."""
    await seed_synthetic(database, "hotlineville", districts=1, streets=1, stations=2, seed=9, shapes=True)
    with psycopg.connect(owner_dsn) as conn:
        row = conn.execute(
            "SELECT ST_X(ST_PointOnSurface(b.geom)), ST_Y(ST_PointOnSurface(b.geom)) "
            "FROM boundaries b JOIN cities c USING (tenant_id) "
            "WHERE c.code = 'hotlineville' AND b.level = 'grid' AND b.valid_to IS NULL ORDER BY b.id LIMIT 1"
        ).fetchone()
    assert row is not None
    return "hotlineville", float(row[0]), float(row[1])


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str) -> Path:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def stored(owner_dsn: str, prefix: str) -> dict[str, tuple[object, ...]]:
    with psycopg.connect(owner_dsn) as conn:
        rows = conn.execute(
            "SELECT r.external_id, r.channel, cat.code, r.contact_name, r.contact_phone, r.submitted_at, "
            "r.station_id IS NOT NULL, r.address "
            "FROM requests r JOIN request_categories cat "
            "ON cat.tenant_id = r.tenant_id AND cat.id = r.category_id "
            "JOIN cities c ON c.tenant_id = r.tenant_id "
            "WHERE c.code = 'hotlineville' AND r.external_id LIKE %s",
            (prefix + "%",),
        ).fetchall()
    return {str(row[0]): tuple(row[1:]) for row in rows}


def refused_lines(stdout: str) -> dict[int, str]:
    return {int(m.group(1)): m.group(2) for m in re.finditer(r"refused line (\d+)[^:]*: (.+)", stdout)}


def test_good_rows_kept_bad_rows_reported_and_nothing_twice(
    cli_env: dict[str, str], tenant: tuple[str, float, float], tmp_path: Path, owner_dsn: str, worker: object
) -> None:
    code, lon, lat = tenant
    point = [f"{lon:.7f}", f"{lat:.7f}", "WGS84"]
    rows = [
        [
            "H-001",
            "2026-11-20 09:30:00",
            "environment",
            "小区门口垃圾堆积",
            "",
            *point,
            "李四",
            "13800000001",
        ],
        ["H-002", "2026/11/20 10:05", "环境卫生", "楼道堆放杂物", "幸福路 8 号", "", "", "", "", ""],
        # A description over two lines: the next row starts on line 5.
        ["H-003", "2026-11-21T08:00:00+08:00", "parking", "占用消防通道\n多次反映", "", *point, "", ""],
        ["H-004", "2026-11-21 08:00:00", "parking", "", "幸福路 9 号", "", "", "", "", ""],  # line 6
        ["H-005", "2026-11-21 08:00:00", "unicorns", "独角兽", "幸福路 9 号", "", "", "", "", ""],  # 7
        ["H-006", "yesterday morning", "parking", "停车难", "幸福路 9 号", "", "", "", "", ""],  # 8
        ["H-007", "2026-11-21 08:00:00", "parking", "停车难", "", "north", f"{lat}", "", "", ""],  # 9
        ["H-008", "2026-11-21 08:00:00", "parking", "长" * 4001, "幸福路 9 号", "", "", "", "", ""],  # 10
        ["H-001", "2026-11-21 08:00:00", "parking", "重复编号", "幸福路 9 号", "", "", "", "", ""],  # 11
        ["H-009", "2026-11-21 08:00:00", "parking", "无地点", "", "", "", "", "", ""],  # 12
        ["H-010", "2999-01-01 08:00:00", "parking", "未来", "幸福路 9 号", "", "", "", "", ""],  # 13
        ["", "", "", "", "", "", "", "", "", ""],  # a blank row is skipped
    ]
    path = write_csv(tmp_path / "hotline.csv", ENGLISH, rows, "utf-8-sig")

    first = liaison(cli_env, "import", "requests", str(path), "--tenant", code)
    assert first.returncode == 1, first.stderr
    assert "11 rows (utf-8): 3 imported, 0 already present, 8 refused" in first.stdout
    refused = refused_lines(first.stdout)
    assert set(refused) == {6, 7, 8, 9, 10, 11, 12, 13}
    assert "missing description" in refused[6]
    assert "unknown category 'unicorns'" in refused[7]
    assert "bad time" in refused[8]
    assert "bad coordinates" in refused[9]
    assert "too long" in refused[10]
    assert "duplicate external id 'H-001'" in refused[11] and "line 2" in refused[11]
    assert "missing location" in refused[12]
    assert "future" in refused[13]

    found = stored(owner_dsn, "H-")
    assert set(found) == {"H-001", "H-002", "H-003"}
    channel, category, name, phone, submitted_at, routed, _ = found["H-001"]
    assert (channel, category, name, phone, routed) == ("hotline", "environment", "李四", "13800000001", True)
    assert submitted_at == datetime(2026, 11, 20, 1, 30, tzinfo=UTC)  # 09:30 in Asia/Shanghai
    assert found["H-002"][1] == "environment" and found["H-002"][5] is False  # an address only: unrouted
    assert found["H-002"][6] == "幸福路 8 号"

    again = liaison(cli_env, "import", "requests", str(path), "--tenant", code)
    assert again.returncode == 1
    assert "0 imported, 3 already present, 8 refused" in again.stdout
    assert stored(owner_dsn, "H-") == found


def test_gb18030_with_chinese_headers(
    cli_env: dict[str, str], tenant: tuple[str, float, float], tmp_path: Path, owner_dsn: str, worker: object
) -> None:
    code, lon, lat = tenant
    rows = [
        [
            "G-001",
            "2026年11月22日 14:20",
            "养老服务",
            "独居老人需要上门探访",
            "和平里 3 号楼",
            "",
            "",
            "",
            "王五",
            "",
        ],
        ["G-002", "2026-11-22 15:00", "安全隐患", "井盖缺失", "", f"{lon}", f"{lat}", "WGS84", "赵六", "139"],
    ]
    path = write_csv(tmp_path / "热线.csv", CHINESE, rows, "gb18030")
    data = path.read_bytes()
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")

    dry = liaison(cli_env, "import", "requests", str(path), "--tenant", code, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "2 rows (gb18030): 2 would be imported" in dry.stdout
    assert stored(owner_dsn, "G-") == {}

    result = liaison(cli_env, "import", "requests", str(path), "--tenant", code)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rows (gb18030): 2 imported, 0 already present, 0 refused" in result.stdout
    found = stored(owner_dsn, "G-")
    assert found["G-001"][1:3] == ("elderly_care", "王五")
    assert found["G-002"][1:3] == ("safety", "赵六")

    wrong = liaison(cli_env, "import", "requests", str(path), "--tenant", code, "--encoding", "utf-8")
    assert wrong.returncode == 2
    assert "not UTF-8 text" in wrong.stderr


@pytest.mark.parametrize(
    ("args", "mentioned"),
    [
        (["missing.csv", "--tenant", "hotlineville"], "is not a file"),
        (["{file}", "--tenant", "nowhere"], "does not exist"),
        (["{file}", "--tenant", "hotlineville", "--encoding", "latin-1"], "--encoding"),
        (["{headless}", "--tenant", "hotlineville"], "lacks a column for"),
    ],
)
def test_usage_errors_are_one_sentence(
    cli_env: dict[str, str], tenant: tuple[str, float, float], tmp_path: Path, args: list[str], mentioned: str
) -> None:
    file = write_csv(tmp_path / "ok.csv", ENGLISH, [], "utf-8")
    headless = write_csv(tmp_path / "headless.csv", ["工单编号", "诉求内容"], [["X-1", "无类别"]], "utf-8")
    argv = [a.format(file=file, headless=headless) for a in args]
    result = liaison(cli_env, "import", "requests", *argv)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert mentioned in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_hostile_cells_are_refused_by_line_and_the_rest_kept(
    cli_env: dict[str, str], tenant: tuple[str, float, float], tmp_path: Path, owner_dsn: str, worker: object
) -> None:
    code, lon, lat = tenant
    nul = "\u0000"
    good = ["N-000", "2026-11-23 09:00", "environment", "井盖缺失", "幸福路 1 号", "", "", "", "", ""]

    def row(external_id: str, **cells: str) -> list[str]:
        """A good row but for its id and `cells` (by column)."""
        return list({**dict(zip(ENGLISH, good, strict=True)), "external_id": external_id, **cells}.values())

    rows = [
        row("N-001", description=f"井盖{nul}缺失"),  # 2
        row(f"N-0{nul}02"),  # 3
        row("N-003", category=f"environment{nul}"),  # 4
        row("N-004", submitted_at=f"2026-11-23{nul}"),  # 5
        row("N-005", contact_phone=f"139{nul}"),  # 6
        row("N-006", address="", lon=f"{lon}{nul}", lat=f"{lat}"),  # 7
        row("N-007", submitted_at="0001-01-01 00:00", description="远古来电"),  # 8
        row("N-008"),  # 9
        row("N-009", description="电话太长", contact_phone="1" * 40),  # 10
    ]
    path = write_csv(tmp_path / "hostile.csv", ENGLISH, rows, "utf-8")
    result = liaison(cli_env, "import", "requests", str(path), "--tenant", code)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "\x00" not in result.stdout
    assert "9 rows (utf-8): 1 imported, 0 already present, 8 refused" in result.stdout, result.stdout
    refused = refused_lines(result.stdout)
    assert set(refused) == {2, 3, 4, 5, 6, 7, 8, 10}
    for line, column in [(2, "description"), (3, "external_id"), (4, "category"), (5, "submitted_at")]:
        assert f"the {column} cell holds a NUL character" in refused[line]
    assert "contact_phone" in refused[6] and "lon" in refused[7]
    assert "bad time" in refused[8]
    assert "contactPhone" in refused[10] and "longer" in refused[10]
    assert "line 3 (N-0\\x0002)" in result.stdout
    assert set(stored(owner_dsn, "N-")) == {"N-008"}
