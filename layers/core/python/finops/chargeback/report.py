"""``finops report``: a self-contained HTML chargeback report for one month, charts as inline SVG.

Every number comes from the named queries (the same SQL as Athena runs), on DuckDB over the exported files.
Charts are drawn here as SVG (no plotting library, nothing fetched by the browser); money is Decimal until
it becomes a bar length.
"""

from __future__ import annotations

import html
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from . import bill, periods
from .engine import AthenaQueries, QueryResult
from .store import ObjectStore

SECTIONS = (
    ("monthly_bill_by_dept", "Bill by department"),
    ("monthly_bill_by_project", "Bill by project"),
    ("monthly_bill_by_model", "Bill by model"),
    ("top_spenders", "Top spenders"),
    ("routing_savings", "Routing savings"),
    ("tax_collected", "Tax-mode surcharges"),
    ("unallocated_spend", "Unallocated spend"),
    ("daily_trend", "Daily trend"),
)
CENT = Decimal("0.01")
COLORS = ("#2f6db5", "#e07b39", "#3a9e6f", "#b54a4a", "#7a5cb5", "#8c8c2d")


def usd(value: Decimal | int | None, places: int = 2) -> str:
    if value is None:
        return ""
    return f"${Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,.{places}f}"


def _places(values: list[Decimal]) -> int:
    """Cents, unless every amount is below a dollar (a quiet month on the simulator): then micro-dollars."""
    return 2 if any(abs(v) >= 1 for v in values) else 6


def hbar_chart(title: str, labels: list[str], values: list[Decimal], *, places: int = 2,
               color: str = COLORS[0]) -> str:
    """Horizontal bars, one per label, value printed at the end of the bar."""
    row_h, label_w, bar_w, pad = 26, 180, 420, 8
    height = pad * 2 + 24 + row_h * max(1, len(labels))
    top = max((v for v in values if v > 0), default=Decimal(1))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{label_w + bar_w + 140}" '
             f'height="{height}" viewBox="0 0 {label_w + bar_w + 140} {height}">',
             f"<title>{html.escape(title)}</title>",
             f'<text x="{pad}" y="{pad + 14}" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = pad + 24 + i * row_h
        width = 0.0 if value <= 0 else float(value / top) * bar_w
        parts.append(f'<text x="{label_w - 6}" y="{y + 16}" font-size="12" text-anchor="end">'
                     f"{html.escape(label)}</text>")
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{width:.2f}" height="{row_h - 8}" '
                     f'fill="{color}" data-label="{html.escape(label)}" data-value="{value}"/>')
        parts.append(f'<text x="{label_w + width + 6:.2f}" y="{y + 16}" font-size="12">'
                     f"{usd(value, places)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def column_chart(title: str, labels: list[str], series: dict[str, list[Decimal]], *, places: int = 2) -> str:
    """Vertical bars per label, one colour per series (side by side)."""
    pad, chart_h, label_h = 40, 220, 50
    group_w = max(14, min(60, 760 // max(1, len(labels))))
    width = pad * 2 + group_w * max(1, len(labels))
    height = pad + chart_h + label_h + 20 * len(series)
    top = max((v for values in series.values() for v in values if v > 0), default=Decimal(1))
    bar_w = max(2.0, (group_w - 4) / max(1, len(series)))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">', f"<title>{html.escape(title)}</title>",
             f'<text x="{pad}" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>',
             f'<text x="4" y="{pad + 4}" font-size="10">{usd(top, places)}</text>',
             f'<line x1="{pad}" y1="{pad + chart_h}" x2="{width - pad}" y2="{pad + chart_h}" stroke="#888"/>']
    for s, (name, values) in enumerate(series.items()):
        color = COLORS[s % len(COLORS)]
        for i, value in enumerate(values):
            h = 0.0 if value <= 0 else float(value / top) * chart_h
            x = pad + i * group_w + 2 + s * bar_w
            parts.append(f'<rect class="bar" x="{x:.2f}" y="{pad + chart_h - h:.2f}" width="{bar_w:.2f}" '
                         f'height="{h:.2f}" fill="{color}" data-series="{html.escape(name)}" '
                         f'data-label="{html.escape(labels[i])}" data-value="{value}"/>')
        legend_y = pad + chart_h + label_h + 14 + 20 * s
        parts.append(f'<rect x="{pad}" y="{legend_y - 10}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{pad + 16}" y="{legend_y}" font-size="12">{html.escape(name)}</text>')
    step = max(1, len(labels) // 16)
    for i, label in enumerate(labels):
        if i % step == 0:
            x = pad + i * group_w + group_w / 2
            parts.append(f'<text x="{x:.2f}" y="{pad + chart_h + 14}" font-size="10" text-anchor="end" '
                         f'transform="rotate(-45 {x:.2f} {pad + chart_h + 14})">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(result: QueryResult, places: int) -> str:
    if not result.rows:
        return "<p class=empty>None this month.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in result.columns)
    body = []
    for row in result.rows:
        cells = []
        for column, value in zip(result.columns, row, strict=True):
            if column.endswith("_usd"):
                cells.append(f"<td class=num>{usd(value, places)}</td>")
            elif isinstance(value, int) and not isinstance(value, bool):
                cells.append(f"<td class=num>{value:,}</td>")
            else:
                cells.append(f"<td>{html.escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def collect(month: str, *, store: ObjectStore | None = None, athena: AthenaQueries | None = None
            ) -> dict[str, QueryResult]:
    params = list(periods.month_bounds(month))
    if athena is not None:
        return {name: athena.run(name, params) for name, _ in SECTIONS}
    if store is None:
        raise ValueError("a store or an Athena runner is needed")
    from .engine import run_duckdb

    with bill.month_connection(store, month) as con:
        return {name: run_duckdb(con, name, params) for name, _ in SECTIONS}


def render(month: str, results: dict[str, QueryResult], *, generated: datetime | None = None) -> str:
    generated = generated or datetime.now(UTC)
    by_dept = results["monthly_bill_by_dept"]
    trend = results["daily_trend"]
    savings = results["routing_savings"]
    dept = bill.totals(by_dept)
    billed, cost, tax = (dept.get(k, Decimal(0)) for k in ("billed_usd", "cost_usd", "tax_usd"))
    saved = bill.totals(savings).get("savings_usd", Decimal(0))
    places = _places([billed, cost, tax, saved])

    dept_records = by_dept.records()
    dept_chart = hbar_chart("Billed spend by department", [r["department_id"] for r in dept_records],
                            [Decimal(r["billed_usd"]) for r in dept_records], places=places)
    per_day = {r["day"].isoformat() if isinstance(r["day"], date) else str(r["day"]): r for r in trend.records()}
    days = periods.days_of(month)
    day_chart = column_chart(
        "Billed spend by day (UTC)", [d[5:] for d in days],
        {"billed": [Decimal(per_day[d]["billed_usd"]) if d in per_day else Decimal(0) for d in days]},
        places=places)
    saving_records = savings.records()
    savings_chart = column_chart(
        "Routing savings by department: requested-model cost vs actual cost",
        [r["department_id"] for r in saving_records],
        {"requested models (counterfactual)": [Decimal(r["counterfactual_usd"]) for r in saving_records],
         "actual cost": [Decimal(r["cost_usd"]) for r in saving_records]}, places=places)

    sections = "".join(
        f"<section><h2>{html.escape(title)}</h2>{_table(results[name], places)}</section>"
        for name, title in SECTIONS if name in results)
    engine = next(iter(results.values())).engine if results else "duckdb"
    style = ("body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
             "margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px}td.num{text-align:right;"
             "font-variant-numeric:tabular-nums}.kpi{display:inline-block;margin-right:2em}.kpi b{font-size:1.4em;"
             "display:block}figure{margin:1em 0}")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>AI chargeback report {html.escape(month)}</title><style>{style}</style></head><body>"
        f"<h1>AI chargeback report, {html.escape(month)}</h1>"
        f"<p>Billing period {html.escape(periods.month_bounds(month)[0])} to "
        f"{html.escape(periods.month_bounds(month)[1])} (exclusive), UTC. Source: the exported ledger "
        f"(usage/dt=*), queried with the named queries on {html.escape(engine)}. Generated "
        f"{generated.strftime('%Y-%m-%dT%H:%M:%SZ')}.</p>"
        f'<div id="kpis"><span class=kpi>Billed<b id="billed">{usd(billed, places)}</b></span>'
        f'<span class=kpi>Provider cost<b id="cost">{usd(cost, places)}</b></span>'
        f'<span class=kpi>Tax-mode surcharges<b id="tax">{usd(tax, places)}</b></span>'
        f'<span class=kpi>Routing savings<b id="savings">{usd(saved, places)}</b></span>'
        f'<span class=kpi>Calls<b id="requests">{dept.get("requests", 0):,}</b></span></div>'
        f'<figure id="chart-departments">{dept_chart}</figure>'
        f'<figure id="chart-days">{day_chart}</figure>'
        f'<figure id="chart-savings">{savings_chart}</figure>'
        f"{sections}</body></html>\n")


def build(month: str, **kwargs: Any) -> str:
    return render(month, collect(month, **kwargs))
