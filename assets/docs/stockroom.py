"""Stock room ledger: parse delivery notes, keep stock levels, and plan reorders.

A small, self-contained module written for the Attention Mask Lab sample documents.
The helpers at the top are only called again at the very bottom, in main().
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, timedelta

# Units the delivery notes use, converted to the base unit of each item (pieces).
UNIT_FACTORS = {"pc": 1, "box": 12, "crate": 48, "pallet": 576}

# Days a supplier needs between an order and its delivery.
LEAD_TIME_DAYS = {"Larkspur Supplies": 3, "Ostby Wholesale": 7, "Quayside Trading": 5}

SAFETY_DAYS = 4  # extra days of stock kept on top of the lead time


def parse_quantity(text: str) -> int:
    """'3 box' -> 36 pieces; '17 pc' -> 17; a bare number counts pieces."""
    parts = text.strip().lower().split()
    if not parts:
        raise ValueError("empty quantity")
    amount = int(parts[0])
    unit = parts[1] if len(parts) > 1 else "pc"
    if unit.endswith("es") and unit[:-2] in UNIT_FACTORS:
        unit = unit[:-2]
    elif unit.endswith("s") and unit[:-1] in UNIT_FACTORS:
        unit = unit[:-1]
    if unit not in UNIT_FACTORS:
        raise ValueError(f"unknown unit {unit!r}")
    return amount * UNIT_FACTORS[unit]


def normalise_sku(raw: str) -> str:
    """Delivery notes spell item codes loosely: ' ab-0042 ' and 'AB0042' are the same item."""
    cleaned = raw.strip().upper().replace("-", "").replace(" ", "")
    letters = "".join(ch for ch in cleaned if ch.isalpha())
    digits = "".join(ch for ch in cleaned if ch.isdigit())
    if not letters or not digits:
        raise ValueError(f"not an item code: {raw!r}")
    return f"{letters}-{int(digits):04d}"


def reorder_point(daily_use: float, supplier: str) -> int:
    """Stock level at which an order must go out so that it arrives before the shelf is empty."""
    lead = LEAD_TIME_DAYS.get(supplier)
    if lead is None:
        raise KeyError(f"no lead time known for {supplier}")
    return round(daily_use * (lead + SAFETY_DAYS))


@dataclass
class Item:
    sku: str
    name: str
    supplier: str
    on_hand: int = 0
    issued: list[tuple[date, int]] = field(default_factory=list)

    def daily_use(self, today: date, days: int = 28) -> float:
        since = today - timedelta(days=days)
        used = sum(qty for day, qty in self.issued if day > since)
        return used / days


@dataclass
class Ledger:
    items: dict[str, Item] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def add_item(self, sku: str, name: str, supplier: str) -> Item:
        key = normalise_sku(sku)
        item = self.items.setdefault(key, Item(key, name, supplier))
        return item

    def receive(self, sku: str, quantity: str, day: date) -> None:
        item = self.items[normalise_sku(sku)]
        pieces = parse_quantity(quantity)
        item.on_hand += pieces
        self.log.append(f"{day.isoformat()} received {pieces} of {item.sku}")

    def issue(self, sku: str, quantity: str, day: date) -> None:
        item = self.items[normalise_sku(sku)]
        pieces = parse_quantity(quantity)
        if pieces > item.on_hand:
            raise ValueError(f"only {item.on_hand} of {item.sku} on hand, cannot issue {pieces}")
        item.on_hand -= pieces
        item.issued.append((day, pieces))
        self.log.append(f"{day.isoformat()} issued {pieces} of {item.sku}")

    def to_order(self, today: date) -> list[tuple[str, int, int]]:
        """(sku, on hand, reorder point) of every item at or below its reorder point."""
        rows = []
        for item in sorted(self.items.values(), key=lambda i: i.sku):
            point = reorder_point(item.daily_use(today), item.supplier)
            if item.on_hand <= point:
                rows.append((item.sku, item.on_hand, point))
        return rows


def read_delivery_note(text: str) -> list[tuple[str, str]]:
    """Rows of a delivery note in CSV form: item code, quantity with unit."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    if [h.strip().lower() for h in header] != ["item", "quantity"]:
        raise ValueError(f"unexpected header {header}")
    return [(row[0], row[1]) for row in reader if row]


def order_lines(ledger: Ledger, today: date, cover_days: int = 14) -> list[str]:
    """Plain-text order lines: enough to cover `cover_days` of use above the reorder point."""
    lines = []
    for sku, on_hand, point in ledger.to_order(today):
        item = ledger.items[sku]
        wanted = point + round(item.daily_use(today) * cover_days) - on_hand
        boxes = -(-wanted // UNIT_FACTORS["box"])
        lines.append(f"{item.supplier}: {boxes} box of {sku} ({item.name})")
    return lines


DELIVERY_NOTE = """item,quantity
ab-0042,3 boxes
AB42,10 pc
cd 0007,1 crate
EF-0310,2 pallets
"""


def main() -> None:
    today = date(2025, 6, 2)
    ledger = Ledger()
    ledger.add_item("AB-0042", "nitrile gloves, size M", "Larkspur Supplies")
    ledger.add_item("CD-0007", "thermal labels 100x150", "Quayside Trading")
    ledger.add_item("EF-0310", "stretch film 500 mm", "Ostby Wholesale")

    # The note spells AB-0042 two ways; normalise_sku, defined at the top, merges them.
    for code, quantity in read_delivery_note(DELIVERY_NOTE):
        ledger.receive(code, quantity, today - timedelta(days=28))

    # Four weeks of issues, one entry a day for each item.
    for offset in range(28):
        day = today - timedelta(days=27 - offset)
        ledger.issue("AB-0042", "1 pc", day)
        ledger.issue("cd0007", "1 pc", day)
        if offset % 2 == 0:
            ledger.issue("ef 310", "1 box", day)

    # parse_quantity and the UNIT_FACTORS table from the top convert these units again here.
    assert parse_quantity("2 pallets") == 2 * UNIT_FACTORS["pallet"]
    assert normalise_sku(" ab-0042 ") == "AB-0042"

    # reorder_point uses LEAD_TIME_DAYS and SAFETY_DAYS, also defined at the top.
    for sku, item in ledger.items.items():
        point = reorder_point(item.daily_use(today), item.supplier)
        print(f"{sku}: {item.on_hand} on hand, reorder at {point} ({LEAD_TIME_DAYS[item.supplier]} days lead time)")

    for line in order_lines(ledger, today):
        print(line)
    print(f"{len(ledger.log)} ledger entries")


if __name__ == "__main__":
    main()
