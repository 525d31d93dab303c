"""The aspects clause (clause 1) of the session 13-15 plans here, from two logs of
`benchmarks/conditioning.py --only aspects` (shipped, candidate): prints the numbers and PASS or FAIL."""

import re
import sys

NON_SQUARE = ("112x64", "64x112", "64x48")


def read(path: str) -> dict[str, tuple[float, float]]:
    """size -> (shape, joint) from an aspects log."""
    out = {}
    for line in open(path):
        m = re.match(r"adherence (\d+x\d+)\s+\S+\s+color=\S+ shape=(\S+) motion=\S+ joint=(\S+)", line)
        if m:
            out[m[1]] = (float(m[2]), float(m[3]))
    return out


def mean(rows: dict[str, tuple[float, float]], i: int) -> float:
    return sum(rows[k][i] for k in NON_SQUARE) / len(NON_SQUARE)


def main() -> None:
    ship, cand = read(sys.argv[1]), read(sys.argv[2])
    dj, ds = mean(cand, 1) - mean(ship, 1), mean(cand, 0) - mean(ship, 0)
    d1 = cand["64x64"][1] - ship["64x64"][1]
    ok = dj >= 0.05 - 1e-9 and ds >= -1e-9 and d1 >= -0.05 - 1e-9
    print(
        f"non-square joint {mean(ship, 1):.3f} -> {mean(cand, 1):.3f} ({dj:+.3f}, need >= +0.05); "
        f"shape {mean(ship, 0):.3f} -> {mean(cand, 0):.3f} ({ds:+.3f}, need >= 0); "
        f"64x64 joint {d1:+.2f} (need >= -0.05)"
    )
    print("PASS" if ok else "FAIL")


if __name__ == "__main__":
    main()
