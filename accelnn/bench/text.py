"""The wording every output of the benchmark shares (the table, the progress lines, the
recommendation): times, counts, a configuration with its layer sizes and batch, and what a row's
check says."""

from __future__ import annotations


def fmt_time(s) -> str:
    """Seconds as "3.2 ms", "581 us"; "-" for None."""
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s * 1e9:.3g} ns"


def fmt_count(x) -> str:
    """A count as "90k", "1.2M"; "-" for None."""
    if x is None:
        return "-"
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def layers_text(layers) -> str:
    """Layer sizes with runs of three or more equal sizes folded: [64, 128 x 6, 10]."""
    parts, i = [], 0
    while i < len(layers):
        j = i
        while j < len(layers) and layers[j] == layers[i]:
            j += 1
        parts += [f"{layers[i]} x {j - i}"] if j - i >= 3 else [str(n) for n in layers[i:j]]
        i = j
    return f"[{', '.join(parts)}]"


def config_text(r: dict) -> str:
    """A record's configuration with its layers and batch: "mnist [784, 256, 10], batch 128"."""
    return f"{r['config']} {layers_text(r['layers'])}, batch {r['batch']}"


def noise_text(r: dict) -> str:
    """What the measuring did about noise: "", "1 of 3 blocks dropped", "re-measured (2 rounds,
    3 of 9 blocks dropped)" or "noisy: machine busy (3 rounds, 9 of 9 blocks dropped)"."""
    if not r.get("attempts"):
        return ""
    dropped = f"{r['dropped_blocks']} of {r['blocks']} blocks dropped"
    rounds = f"{r['attempts']} round{'s' * (r['attempts'] != 1)}"
    if r["noisy"]:
        return f"noisy: {r['noisy']} ({rounds}, {dropped})"
    if r["attempts"] > 1:
        return f"re-measured ({rounds}, {dropped})"
    return dropped if r["dropped_blocks"] else ""


def check_text(r: dict) -> str:
    """The check of a row: FAILED or ERROR BEYOND LIMIT for an accelnn backend; a peer's row is
    context, never a failure ("peer, not judged"; its error stays in the error columns); then
    what the measuring did about noise."""
    if r["status"] != "ok":
        return (f"peer did not run: {r['error'][:80]}" if r["peer"]
                else f"FAILED: {r['error'][:80]}")
    base = "peer, not judged" if r["peer"] else \
        "ERROR BEYOND LIMIT" if r["within_limit"] is False else "ok"
    noise = noise_text(r)
    return f"{base}; {noise}" if noise else base
