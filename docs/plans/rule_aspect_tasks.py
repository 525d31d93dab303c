"""Clause 2 of session15_soup.md, from two logs of `benchmarks/conditioning.py --only aspect-tasks`
(shipped, candidate): prints each check and PASS or FAIL."""

import re
import sys

NON_SQUARE = ("112x64", "64x112", "64x48")
ALL_SIZES = ("64x64", *NON_SQUARE)
ROW = re.compile(r"(image-to-video|extend forward) (\d+x\d+): (joint|jump|named|join)\S*.*?\s(\d+\.\d+)\s")


def read(path: str) -> dict[tuple[str, str, str], float]:
    """(task, size, metric) -> value, task "image" or "exten", metric joint / jump / named / join."""
    out = {}
    for line in open(path):
        m = ROW.match(line + " ")
        if m:
            out[(m[1][:5], m[2], m[3])] = float(m[4])
    return out


def mean(rows: dict[tuple[str, str, str], float], task: str, metric: str, sizes: tuple[str, ...]) -> float:
    return sum(rows[(task, s, metric)] for s in sizes) / len(sizes)


def main() -> None:
    ship, cand = read(sys.argv[1]), read(sys.argv[2])
    checks = []
    for task, metric, name in (("image", "jump", "i2v jump"), ("exten", "join", "extension jump")):
        s, c = mean(ship, task, metric, NON_SQUARE), mean(cand, task, metric, NON_SQUARE)
        checks.append((f"non-square {name} {s:.2f} -> {c:.2f} (need <= {0.75 * s:.2f})", c <= 0.75 * s + 1e-9))
        s1, c1 = ship[(task, "64x64", metric)], cand[(task, "64x64", metric)]
        checks.append((f"64x64 {name} {s1:.2f} -> {c1:.2f} (need <= {s1 + 0.2:.2f})", c1 <= s1 + 0.2 + 1e-9))
    for task, metric, name in (("image", "joint", "i2v joint"), ("exten", "named", "extension objects")):
        s, c = mean(ship, task, metric, ALL_SIZES), mean(cand, task, metric, ALL_SIZES)
        checks.append((f"4-size {name} {s:.3f} -> {c:.3f} (need >= {s - 0.06:.3f})", c >= s - 0.06 - 1e-9))
    for text, ok in checks:
        print(("ok   " if ok else "FAIL ") + text)
    print("PASS" if all(ok for _, ok in checks) else "FAIL")


if __name__ == "__main__":
    main()
