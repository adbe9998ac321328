#!/usr/bin/env python3
"""Minimizes fuzz/corpus/TARGET to the inputs that reach code of gatehouse's own.

Plain `cargo fuzz cmin` keeps every input that adds any coverage edge, and most edges of the
parser targets are in dependencies (the YAML scanner, serde, std formatting): the corpora stay
at hundreds of files that each add a branch of unsafe-libyaml. This script has libFuzzer record
every edge each input reaches (the seeds, corpus/TARGET and the directories given), keeps the
edges whose source line (after inlining) is in gatehouse's src/ or fuzz/, and picks a small
set of inputs that, with the seeds, reaches all of them (greedy set cover: most new edges
first, the smaller input on a tie). Everything the seeds and the inputs reached in
gatehouse's code stays reached; branches inside dependencies are left to the fuzzer to find
again from the seeds.

Usage (from fuzz/, after `cargo +nightly fuzz build TARGET`):
    python3 cmin.py TARGET [MORE_INPUT_DIRS...]
Needs readelf (binutils) and llvm-symbolizer (Debian: llvm). Finds the binary through
CARGO_TARGET_DIR, fuzz/target or target/ (`make fuzz`); `make fuzz-cmin` runs it for every
target with what `make fuzz` found.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

PAGE = 4096


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    target, extra = sys.argv[1], sys.argv[2:]
    here = os.path.dirname(os.path.abspath(__file__))
    os.chdir(here)
    # cargo fuzz's default, or `make fuzz`'s (the repository's target/), or CARGO_TARGET_DIR.
    dirs = [os.environ.get("CARGO_TARGET_DIR"), os.path.join(here, "target"),
            os.path.join(here, "..", "target")]
    binaries = [os.path.join(d, "x86_64-unknown-linux-gnu", "release", target)
                for d in dirs if d]
    binary = next((b for b in binaries if os.path.exists(b)), None)
    if binary is None:
        sys.exit(f"no {target} binary in {dirs}: run `cargo +nightly fuzz build {target}` first")
    corpus = os.path.join("corpus", target)
    seeds = os.path.join("seeds", target)
    ours, to_pc = gatehouse_pcs(binary)

    with tempfile.TemporaryDirectory() as tmp:
        initial = os.path.join(tmp, "initial")
        shutil.copytree(seeds, initial)
        control = os.path.join(tmp, "control")
        # The set-cover merge records every edge of every input (the plain merge only those
        # no earlier input reached); its own choice is not used.
        subprocess.run(
            [binary, "-set_cover_merge=1", "-use_counters=0", f"-merge_control_file={control}",
             initial, corpus, *extra],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        files, first_new, features, observed = read_control(control)
        all_edges = {i: {pc for pc in map(to_pc, f) if pc is not None}
                     for i, f in features.items()}
        if set().union(*all_edges.values()) != observed:
            sys.exit("features do not map to the edges libFuzzer observed: numbering changed?")
        edges = {i: e & ours for i, e in all_edges.items()}
        covered = set().union(*(edges.get(i, set()) for i in range(first_new)))
        seeded = len(covered)
        reachable = covered.union(*edges.values())
        # Greedy set cover: the input adding most uncovered edges first, the smaller on a tie.
        left = {i: edges.get(i, set()) - covered for i in range(first_new, len(files))}
        keep = []
        while True:
            best = max(left, default=None,
                       key=lambda i: (len(left[i]), -os.path.getsize(files[i])))
            if best is None or not left[best]:
                break
            keep.append(files[best])
            covered |= left.pop(best)
            for i in left:
                left[i] -= covered
        assert covered == reachable
        picked = os.path.join(tmp, "picked")
        os.mkdir(picked)
        for path in keep:
            shutil.copy(path, picked)
        shutil.rmtree(corpus)
        shutil.copytree(picked, corpus)
    size = sum(os.path.getsize(os.path.join(corpus, f)) for f in os.listdir(corpus))
    print(f"{target}: {len(files) - first_new} inputs -> {len(keep)} in {corpus} ({size} bytes); "
          f"edges on gatehouse's lines reached: {len(reachable)} (by the seeds alone: "
          f"{seeded}), all kept")


def gatehouse_pcs(binary):
    """Indices into the binary's sanitizer-coverage PC table of edges on gatehouse's source
    lines, and the map from libFuzzer feature numbers to those indices."""
    headers = subprocess.run(["readelf", "-SW", binary], capture_output=True, text=True,
                             check=True).stdout
    match = re.search(r"__sancov_pcs\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", headers)
    if not match:
        sys.exit("no __sancov_pcs section: not a cargo-fuzz binary?")
    low, size = int(match.group(1), 16), int(match.group(2), 16)
    # The table holds (PC, flags) pairs; in a PIE the PCs are R_X86_64_RELATIVE relocations.
    relocs = subprocess.run(["readelf", "-rW", binary], capture_output=True, text=True,
                            check=True).stdout
    pcs = {}
    for line in relocs.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "R_X86_64_RELATIVE":
            offset = int(parts[0], 16)
            if low <= offset < low + size and (offset - low) % 16 == 0:
                pcs[(offset - low) // 16] = parts[3]
    order = sorted(pcs)
    lines = subprocess.run(
        ["llvm-symbolizer", f"--obj={binary}", "--no-inlines", "--functions=none"],
        input="\n".join("0x" + pcs[i] for i in order), capture_output=True, text=True,
        check=True,
    ).stdout.split("\n\n")
    # The source line of the edge (after inlining): src/ or fuzz/ of the checkout the binary
    # was built from (this one unless GATEHOUSE_ROOT says otherwise).
    root = os.environ.get("GATEHOUSE_ROOT",
                          os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    mine = (os.path.join(root, "src") + os.sep, os.path.join(root, "fuzz") + os.sep)
    ours = {i for i, line in zip(order, lines) if line.strip().startswith(mine)}

    # libFuzzer numbers an edge feature (with -use_counters=0) by counter regions: the part of
    # the counter array up to the first page boundary, then one region per page; a region
    # starting at counter s numbers its counters from 8 * s.
    match = re.search(r"__sancov_cntrs\s+\S+\s+([0-9a-f]+)", headers)
    first = (-int(match.group(1), 16)) % PAGE or PAGE
    count = len(pcs)

    def to_pc(feature):
        if feature < first:
            return feature
        start = first + (feature // 8 - first) // PAGE * PAGE
        offset = feature - 8 * start
        if feature < 8 * first or offset >= PAGE or start + offset >= count:
            return None  # between regions, or past the counters (stack depth and such)
        return start + offset

    return ours, to_pc


def read_control(path):
    """(files, index of the first non-seed file, {file index: its features}, every edge)."""
    lines = open(path).read().split("\n")
    count, first_new = int(lines[0]), int(lines[1])
    files = lines[2:2 + count]
    features, observed = {}, set()
    for line in lines[2 + count:]:
        parts = line.split()
        if parts and parts[0] == "FT":
            features[int(parts[1])] = [int(x) for x in parts[2:]]
        elif parts and parts[0] == "COV":
            observed.update(int(x) for x in parts[2:])
    return files, first_new, features, observed


if __name__ == "__main__":
    main()
