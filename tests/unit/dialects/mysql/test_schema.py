"""The order MySQL views are re-created in (freshdb.dialects.mysql.schema)."""

from __future__ import annotations

from freshdb.dialects.mysql.schema import order_views


def test_views_are_ordered_after_the_views_they_read() -> None:
    views = [
        ("top", "CREATE VIEW `top` AS select `middle`.`id` AS `id` from `middle`"),
        ("middle", "CREATE VIEW `middle` AS select `base`.`id` AS `id` from `base`"),
        ("base", "CREATE VIEW `base` AS select `t`.`id` AS `id` from `t`"),
        ("alone", "CREATE VIEW `alone` AS select 1 AS `x`"),
    ]
    ordered = order_views(views)
    position = {ddl.split("`")[1]: index for index, ddl in enumerate(ordered)}
    assert position["base"] < position["middle"] < position["top"]
    assert len(ordered) == 4


def test_view_cycles_fall_back_to_the_given_order() -> None:
    views = [
        ("a", "CREATE VIEW `a` AS select `b` AS `b` from `t`"),
        ("b", "CREATE VIEW `b` AS select `a` AS `a` from `t`"),
    ]
    assert order_views(views) == [ddl for _, ddl in views]
