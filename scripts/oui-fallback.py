#!/usr/bin/env python3
"""Prints crates/intel/data/oui_common.tsv: the MA-L prefixes of common home-network vendors,
from Debian's ieee-data (/usr/share/ieee-data/oui.csv, or the file given as the argument)."""
import csv
import sys

WANT = [
    ("Apple, Inc.", ["Apple, Inc."]),
    ("Samsung Electronics Co.,Ltd", ["Samsung Electronics Co.,Ltd"]),
    ("Google, Inc.", ["Google, Inc."]),
    ("Amazon Technologies Inc.", ["Amazon Technologies Inc."]),
    ("Sonos, Inc.", ["Sonos, Inc."]),
    ("Raspberry Pi Trading Ltd", ["Raspberry Pi Trading Ltd", "Raspberry Pi (Trading) Ltd"]),
    ("Raspberry Pi Foundation", ["Raspberry Pi Foundation"]),
    ("Intel Corporate", ["Intel Corporate"]),
    ("Realtek Semiconductor Corp.", ["Realtek Semiconductor Corp.", "REALTEK SEMICONDUCTOR CORP."]),
    ("TP-LINK TECHNOLOGIES CO.,LTD.", ["TP-LINK TECHNOLOGIES CO.,LTD."]),
    ("Espressif Inc.", ["Espressif Inc."]),
    ("Xiaomi Communications Co Ltd", ["Xiaomi Communications Co Ltd"]),
    ("Roku, Inc", ["Roku, Inc", "Roku, Inc."]),
    ("Nintendo Co.,Ltd", ["Nintendo Co.,Ltd", "Nintendo Co., Ltd."]),
    ("Microsoft Corporation", ["Microsoft Corporation"]),
    ("LG Electronics (Mobile Communications)", ["LG Electronics (Mobile Communications)"]),
    ("Ubiquiti Inc", ["Ubiquiti Inc", "Ubiquiti Networks Inc."]),
    ("AVM GmbH", ["AVM GmbH", "AVM Audiovisuelles Marketing und Computersysteme GmbH"]),
    ("Nest Labs Inc.", ["Nest Labs Inc."]),
    ("Sony Interactive Entertainment Inc.", ["Sony Interactive Entertainment Inc."]),
]

path = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/ieee-data/oui.csv"
rows = list(csv.reader(open(path, encoding="utf-8")))[1:]
print("# Common vendors of the IEEE MA-L registry (OUI, 24-bit prefixes), taken from Debian's")
print("# ieee-data 20220827.1 /usr/share/ieee-data/oui.csv: the fallback when that file is absent.")
print("# One vendor per line: the organisation name, a tab, its prefixes (hex) separated by spaces.")
print("# Regenerate: scripts/oui-fallback.py > crates/intel/data/oui_common.tsv")
for name, alts in WANT:
    ouis = sorted({r[1].upper() for r in rows if r[0] == "MA-L" and r[2].strip() in alts})
    print(name + "\t" + " ".join(ouis))
