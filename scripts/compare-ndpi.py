#!/usr/bin/env python3
"""Compare netvigil's per-flow application labels with nDPI's expected results.

For every capture NAME in the pcaps folder that has a NAME.ndpi-expected.out beside it
(nDPI's own regression output, see ../shared/pcaps/README.md), run
`netvigil read --format jsonl NAME`, parse nDPI's flow lines, and compare the two tools'
labels per (l4, unordered endpoint pair). When a pair holds several flows (a tool split a
connection on an idle timeout, or nDPI and netvigil cut differently) the *sets* of labels
are compared. nDPI names are mapped to netvigil's vocabulary at the master-protocol level
(TLS.YouTube -> tls, QUIC.Google -> quic, DNS.Apple -> dns, ...).

Only TCP and UDP flows are compared (nDPI's ICMP/IGMP "labels" are L4 names).

This is a report, not a test: it always exits 0.

Usage: scripts/compare-ndpi.py [--pcaps DIR] [--netvigil PATH] [--top N] [--only SUBSTR]
"""

import argparse
import collections
import ipaddress
import json
import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# nDPI master (or app, when nDPI gives no master) -> netvigil app_proto.
NDPI_MAP = {
    "tls": "tls",
    "quic": "quic",
    "dns": "dns",
    "http": "http",
    "http_proxy": "http",  # nDPI: HTTP seen on a proxy port (8080, 3128...)
    "http_connect": "http",  # nDPI: HTTP CONNECT request
    "stun": "stun",
    "dtls": "dtls",
    "ssh": "ssh",
    "ntp": "ntp",
    "dhcp": "dhcp",
    "dhcpv6": "dhcpv6",
    "mdns": "mdns",
    "llmnr": "llmnr",
    "ssdp": "ssdp",
    "netbios": "netbios",
    "smbv1": "smb",
    "smbv23": "smb",
    "rdp": "rdp",
    "wireguard": "wireguard",
    "openvpn": "openvpn",
    "bittorrent": "bittorrent",
    "syslog": "syslog",
    "snmp": "snmp",
    "unknown": None,
}

# L4 names that nDPI prints as a protocol label: not application protocols.
NDPI_NOT_APP = {"icmp", "icmpv6", "igmp"}

FLOW_RE = re.compile(
    r"^\s*(?P<n>\d+)\s+(?P<l4>[A-Za-z0-9_]+)\s+(?P<a>\S+)\s+(?P<sep><->|->)\s+(?P<b>\S+)\s+(?P<rest>\[.*)$"
)
PROTO_RE = re.compile(r"\[proto: (?P<p>[^\]]+)\]")
CONF_RE = re.compile(r"\[Confidence: (?P<c>[^\]]+)\]")
HOST_RE = re.compile(r"\[Hostname/SNI: (?P<h>[^\]]+)\]")


def parse_endpoint(text):
    """'1.2.3.4:80' or '[2001:db8::1]:443' -> (ip, port); None if not an endpoint."""
    m = re.fullmatch(r"\[(?P<ip>[0-9A-Fa-f:.]+)\]:(?P<port>\d+)", text)
    if not m:
        m = re.fullmatch(r"(?P<ip>[0-9.]+):(?P<port>\d+)", text)
    if not m:
        return None
    try:
        ip = str(ipaddress.ip_address(m.group("ip")))
    except ValueError:
        return None
    return ip, int(m.group("port"))


def map_ndpi(label):
    """nDPI 'MASTER.APP' (or 'APP', possibly prefixed 'VXLAN:91.119/') -> netvigil name."""
    name = label.split("/", 1)[1] if "/" in label else label
    parts = name.split(".")
    master = parts[0].lower()
    app = parts[1].lower() if len(parts) > 1 else None
    if app in ("smbv1", "smbv23"):
        return "smb"
    if master in NDPI_MAP:
        return NDPI_MAP[master]
    return master


def parse_ndpi(path):
    """Yield dicts for the flow lines of an nDPI .out file; other lines are ignored."""
    flows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            m = FLOW_RE.match(line)
            if not m:
                continue
            pm = PROTO_RE.search(m.group("rest"))
            a, b = parse_endpoint(m.group("a")), parse_endpoint(m.group("b"))
            if not pm or a is None or b is None:
                continue
            cm = CONF_RE.search(line)
            hm = HOST_RE.search(line)
            raw = pm.group("p")
            flows.append(
                {
                    "n": int(m.group("n")),
                    "l4": m.group("l4").lower(),
                    "a": a,
                    "b": b,
                    "sep": m.group("sep"),
                    "raw": raw.split("/", 1)[1] if "/" in raw else raw,
                    "label": map_ndpi(raw),
                    "conf": cm.group("c") if cm else "?",
                    "host": hm.group("h") if hm else None,
                }
            )
    return flows


def run_netvigil(binary, capture):
    try:
        out = subprocess.run(
            [binary, "read", "--format", "jsonl", "--no-progress", capture],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, str(e)
    flows = []
    for line in out.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r.get("type") != "flow":
            continue
        c, s = r.get("client") or {}, r.get("server") or {}
        try:
            a = (str(ipaddress.ip_address(c["ip"])), int(c["port"]))
            b = (str(ipaddress.ip_address(s["ip"])), int(s["port"]))
        except (KeyError, ValueError, TypeError):
            continue
        flows.append(
            {
                "id": r.get("id"),
                "l4": str(r.get("l4")).lower(),
                "a": a,
                "b": b,
                "label": r.get("app_proto"),
                "by": r.get("app_proto_by"),
                "domain": r.get("domain"),
                "payload": sum(((r.get(d) or {}).get("payload_bytes") or 0) for d in ("to_server", "to_client")),
            }
        )
    err = None if out.returncode == 0 else "exit %d: %s" % (out.returncode, out.stderr.strip()[:200])
    return flows, err


def key_of(f):
    return (f["l4"], frozenset((f["a"], f["b"])) if f["a"] != f["b"] else frozenset([f["a"]]))


def fmt_ep(ep):
    ip, port = ep
    return ("[%s]:%d" if ":" in ip else "%s:%d") % (ip, port)


def label_set_str(labels):
    return "+".join(sorted(labels)) if labels else "(none)"


def nv_label(f):
    """netvigil's label as shown in the report: port guesses are marked '~port'."""
    if f["label"] is None:
        return None
    return f["label"] + ("~port" if f["by"] == "port" else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pcaps", default=os.path.join(REPO, "..", "shared", "pcaps"))
    ap.add_argument("--netvigil", default=os.path.join(REPO, "target", "release", "netvigil"))
    ap.add_argument("--top", type=int, default=25, help="rows per category list (default 25)")
    ap.add_argument("--only", default=None, help="only captures whose name contains this")
    ap.add_argument(
        "--list",
        metavar="LABEL",
        default=None,
        help="also list every pair of the categories naming LABEL (e.g. tls, quic~port, gnutella)",
    )
    ap.add_argument(
        "--port-guess-agrees",
        action="store_true",
        help="count netvigil port guesses whose name matches nDPI's as agreement "
        "(default: a port guess is shown as NAME~port and is a disagreement)",
    )
    args = ap.parse_args()

    pcaps = os.path.normpath(args.pcaps)
    if not os.path.isfile(args.netvigil):
        print("netvigil binary not found: %s (cargo build --release)" % args.netvigil)
        return 0
    try:
        bin_mtime = os.path.getmtime(args.netvigil)
        newest = max(
            (os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(os.path.join(REPO, "crates"))
             for f in fs if f.endswith(".rs")),
            default=0,
        )
        if newest > bin_mtime:
            print("warning: %s is older than some crates/**/*.rs; rebuild for current results\n" % args.netvigil)
    except OSError:
        pass

    try:
        names = sorted(os.listdir(pcaps))
    except OSError as e:
        print("cannot list %s: %s" % (pcaps, e))
        return 0
    suffix = ".ndpi-expected.out"
    captures = [n[: -len(suffix)] for n in names if n.endswith(suffix) and n[: -len(suffix)] in names]
    if args.only:
        captures = [c for c in captures if args.only in c]

    tot = collections.Counter()
    diffs = collections.Counter()  # (nv set, ndpi set) -> count
    diff_example = {}
    diff_conf = collections.defaultdict(collections.Counter)
    ndpi_only = collections.Counter()  # ndpi set -> count (netvigil unlabelled)
    ndpi_only_example = {}
    ndpi_only_conf = collections.defaultdict(collections.Counter)
    nv_only = collections.Counter()
    nv_only_example = {}
    per_capture = []
    all_examples = collections.defaultdict(list)  # category text -> [example, ...]
    ndpi_only_by_port = 0  # nDPI-only pairs whose nDPI labels are all port/IP guesses
    ndpi_only_no_payload = 0  # nDPI-only pairs where netvigil saw no transport payload at all

    for cap in captures:
        nd = [f for f in parse_ndpi(os.path.join(pcaps, cap + suffix)) if f["l4"] in ("tcp", "udp")]
        nv, err = run_netvigil(args.netvigil, os.path.join(pcaps, cap))
        if nv is None:
            per_capture.append((cap, None, err))
            continue
        nv = [f for f in nv if f["l4"] in ("tcp", "udp")]
        nd_by, nv_by = collections.defaultdict(list), collections.defaultdict(list)
        for f in nd:
            nd_by[key_of(f)].append(f)
        for f in nv:
            nv_by[key_of(f)].append(f)
        c = collections.Counter()
        c["ndpi_flows"] = len(nd)
        c["nv_flows"] = len(nv)
        c["ndpi_pairs_unmatched"] = sum(1 for k in nd_by if k not in nv_by)
        c["nv_pairs_unmatched"] = sum(1 for k in nv_by if k not in nd_by)
        for k, nfs in nd_by.items():
            if k not in nv_by:
                continue
            vfs = nv_by[k]
            c["compared"] += 1
            c["compared_ndpi_flows"] += len(nfs)
            n_set = frozenset(f["label"] for f in nfs if f["label"])
            if args.port_guess_agrees:
                v_set = frozenset(f["label"] for f in vfs if f["label"])
            else:
                v_set = frozenset(nv_label(f) for f in vfs if f["label"])
            ex_n = min(nfs, key=lambda f: f["n"])
            example = "%s  %s %s <-> %s  (nDPI #%d %s, %s%s)" % (
                cap, k[0], fmt_ep(ex_n["a"]), fmt_ep(ex_n["b"]), ex_n["n"], ex_n["raw"], ex_n["conf"],
                ", SNI/host " + ex_n["host"] if ex_n["host"] else "",
            )
            confs = frozenset(f["conf"] for f in nfs if f["label"])
            if n_set == v_set:
                c["agree"] += 1
                c["agree_labelled" if n_set else "agree_unlabelled"] += 1
                if n_set and any("." in f["raw"] for f in nfs):
                    c["agree_with_service"] += 1  # nDPI said e.g. TLS.YouTube, netvigil tls
            elif not v_set:
                c["ndpi_only"] += 1
                ks = label_set_str(n_set)
                ndpi_only[ks] += 1
                ndpi_only_example.setdefault(ks, example)
                all_examples["nDPI-only %s" % ks].append(example)
                if all(cf.startswith("Match by") for cf in confs):
                    ndpi_only_by_port += 1
                if all(f["payload"] == 0 for f in vfs):
                    ndpi_only_no_payload += 1
                for cf in confs:
                    ndpi_only_conf[ks][cf] += 1
            elif not n_set:
                c["nv_only"] += 1
                ks = label_set_str(v_set)
                nv_only[ks] += 1
                nv_only_example.setdefault(ks, example)
                all_examples["netvigil-only %s" % ks].append(example)
            else:
                c["differ"] += 1
                ks = (label_set_str(v_set), label_set_str(n_set))
                diffs[ks] += 1
                diff_example.setdefault(ks, example)
                all_examples["netvigil %s vs nDPI %s" % ks].append(example)
                for cf in confs:
                    diff_conf[ks][cf] += 1
        tot.update(c)
        per_capture.append((cap, c, err))

    def pct(a, b):
        return "%.1f%%" % (100.0 * a / b) if b else "-"

    print("netvigil vs nDPI expected labels (%s; %d captures with .ndpi-expected.out)" % (pcaps, len(captures)))
    print("unit: (l4, unordered endpoint pair) present in both tools; TCP/UDP only; nDPI mapped at master level")
    print("port guesses: %s" % ("count as the guessed protocol" if args.port_guess_agrees
                                else "shown as NAME~port, never agree"))
    print()
    hdr = "%-52s %6s %6s %6s %6s %6s %6s %6s %7s" % (
        "capture", "pairs", "agree", "lab=", "none=", "differ", "nDPIon", "nvonly", "agree%")
    print(hdr)
    print("-" * len(hdr))
    for cap, c, err in per_capture:
        if c is None:
            print("%-52s netvigil failed: %s" % (cap, err))
            continue
        print("%-52s %6d %6d %6d %6d %6d %6d %6d %7s%s" % (
            cap[:52], c["compared"], c["agree"], c["agree_labelled"], c["agree_unlabelled"], c["differ"],
            c["ndpi_only"], c["nv_only"], pct(c["agree"], c["compared"]),
            "  [netvigil: %s]" % err if err else ""))
    print("-" * len(hdr))
    print("%-52s %6d %6d %6d %6d %6d %6d %6d %7s" % (
        "TOTAL", tot["compared"], tot["agree"], tot["agree_labelled"], tot["agree_unlabelled"], tot["differ"],
        tot["ndpi_only"], tot["nv_only"], pct(tot["agree"], tot["compared"])))
    print("(lab= both gave the same label(s); none= both left it unlabelled; nDPIon = nDPI labels, netvigil does not)")
    print()
    labelled_any = tot["compared"] - tot["agree_unlabelled"]
    print("OVERALL")
    print("  nDPI TCP/UDP flows: %d in %d captures; netvigil TCP/UDP flows: %d" % (
        tot["ndpi_flows"], len(captures), tot["nv_flows"]))
    print("  endpoint pairs compared: %d (holding %d nDPI flows)" % (tot["compared"], tot["compared_ndpi_flows"]))
    print("  pairs only nDPI has: %d; pairs only netvigil has: %d" % (tot["ndpi_pairs_unmatched"], tot["nv_pairs_unmatched"]))
    print("  agreement: %d / %d = %s (same label %d, both unlabelled %d)" % (
        tot["agree"], tot["compared"], pct(tot["agree"], tot["compared"]), tot["agree_labelled"], tot["agree_unlabelled"]))
    print("  of the same-label pairs, nDPI also names a service on top (TLS.YouTube, DNS.Apple...) in %d" % (
        tot["agree_with_service"]))
    print("  agreement where at least one tool labels: %d / %d = %s" % (
        tot["agree_labelled"], labelled_any, pct(tot["agree_labelled"], labelled_any)))
    print("  differ: %d; nDPI labels / netvigil silent: %d; netvigil labels / nDPI unknown: %d" % (
        tot["differ"], tot["ndpi_only"], tot["nv_only"]))
    print("  of the nDPI-only pairs, nDPI guessed by port/IP ('Match by ...') in %d, by DPI in %d" % (
        ndpi_only_by_port, tot["ndpi_only"] - ndpi_only_by_port))
    print("  of the nDPI-only pairs, %d carry no TCP/UDP payload at all (nothing to inspect)" % ndpi_only_no_payload)
    print()

    def conf_str(cc):
        return ", ".join("%s %d" % (k, v) for k, v in cc.most_common())

    print("TOP DISAGREEMENTS (netvigil label vs nDPI label: pairs; nDPI confidence; example)")
    for (v, n), cnt in diffs.most_common(args.top):
        print("  %5d  netvigil %-14s nDPI %-14s [%s]" % (cnt, v, n, conf_str(diff_conf[(v, n)])))
        print("         e.g. %s" % diff_example[(v, n)])
    if len(diffs) > args.top:
        print("  ... %d more categories" % (len(diffs) - args.top))
    print()
    print("nDPI LABELS, NETVIGIL UNLABELLED (nDPI label: pairs; nDPI confidence; example)")
    for n, cnt in ndpi_only.most_common(args.top):
        print("  %5d  nDPI %-20s [%s]" % (cnt, n, conf_str(ndpi_only_conf[n])))
        print("         e.g. %s" % ndpi_only_example[n])
    if len(ndpi_only) > args.top:
        rest = ndpi_only.most_common()[args.top:]
        print("  ... %d more categories, %d pairs: %s" % (
            len(rest), sum(c for _, c in rest), ", ".join("%s %d" % x for x in rest)))
    print()
    print("NETVIGIL LABELS, nDPI UNKNOWN (netvigil label: pairs; example)")
    for v, cnt in nv_only.most_common(args.top):
        print("  %5d  netvigil %-20s" % (cnt, v))
        print("         e.g. %s" % nv_only_example[v])
    if args.list:
        want = args.list.lower()
        print()
        print("ALL PAIRS OF CATEGORIES NAMING %r" % want)
        for cat in sorted(all_examples):
            if want in re.split(r"[ +]", cat.lower()):
                print("  %s (%d)" % (cat, len(all_examples[cat])))
                for ex in all_examples[cat]:
                    print("    %s" % ex)
    return 0


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a report: never fail the caller
        print("compare-ndpi: internal error: %r" % (e,))
    sys.exit(0)
