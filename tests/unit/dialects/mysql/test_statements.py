"""How stored programs are re-created (freshdb.dialects.mysql.statements)."""

from __future__ import annotations

from freshdb.dialects.mysql.schema import SchemaObjects
from freshdb.dialects.mysql.statements import ProgramDefinition


def test_each_program_ends_its_round_trip_and_events_keep_their_time_zone() -> None:
    objects = SchemaObjects(
        character_set="utf8mb4",
        collation="utf8mb4_0900_ai_ci",
        tables=(("t", "CREATE TABLE `t` (`id` int)"),),
        programs=(
            (
                "STRICT_TRANS_TABLES",
                None,
                "CREATE TRIGGER `a` BEFORE INSERT ON `t` FOR EACH ROW SET @x = 1",
            ),
            (
                "STRICT_TRANS_TABLES",
                "SYSTEM",
                "CREATE EVENT `e` ON SCHEDULE EVERY 1 DAY DO DELETE FROM `t`",
            ),
        ),
    )
    statements = objects.replay(with_tables=True)
    programs = [s for s in statements if isinstance(s, ProgramDefinition)]
    assert [p.split("`")[1] for p in programs] == ["a", "e"]
    event = statements.index(programs[1])
    assert statements[event - 1] == "SET SESSION time_zone = 'SYSTEM'"
    assert statements.index(programs[0]) < event
    assert "time_zone = DEFAULT" in statements[-1]  # the session is left as it was
