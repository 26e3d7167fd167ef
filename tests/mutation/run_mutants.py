#!/usr/bin/env python3
"""Mutation test of the unit tests: plants each mutant of mutants.py, one at
a time, in a scratch copy of the source tree, rebuilds it (cpu-only, no
benchmarks, no CUDA emulator) and runs `ctest -L unit -LE emulated`. A mutant
is killed when a test fails (ctest stops at the first failure: the tests
named are the first to fail, not all), survived when every test passes. On demand only, not in CI (about 20 s a
mutant on 2 cores). See docs/RELIABILITY.md.

  tests/mutation/run_mutants.py [--source DIR] [--scratch DIR] [--only ID ...]
                                [--jobs N] [--keep-going]

--source: the tree to mutate and test (default: this repository's working
tree; a git tree contributes its tracked and untracked-unignored files).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mutants import MUTANTS  # noqa: E402


def run(cmd, cwd, log):
    with open(log, "w") as f:
        return subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT).returncode


def copy_tree(source, scratch):
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    os.makedirs(scratch)
    if not os.path.exists(os.path.join(source, ".git")):
        shutil.copytree(source, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns("build*"))
        return
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=source, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = os.path.join(source, rel)
        if not os.path.isfile(src):
            continue
        dst = os.path.join(scratch, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)


def failed_tests(log):
    """The names in ctest's closing list of failed tests."""
    names, listing = [], False
    with open(log) as f:
        for line in f:
            if line.startswith("The following tests FAILED"):
                listing = True
            elif listing and " - " in line:
                names.append(line.split(" - ", 1)[1].rsplit(" (", 1)[0].strip())
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.dirname(os.path.dirname(HERE)))
    ap.add_argument("--scratch", default="/tmp/npairs-mutation")
    ap.add_argument("--only", nargs="*", help="mutant ids to run (default: all)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()

    source = os.path.abspath(args.source)
    tree = os.path.join(args.scratch, "tree")
    logs = os.path.join(args.scratch, "logs")
    build = os.path.join(tree, "build")
    copy_tree(source, tree)
    os.makedirs(logs, exist_ok=True)
    configure = ["cmake", "-S", tree, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DNPAIRS_ENABLE_CUDA=OFF",
                 "-DNPAIRS_BUILD_TESTS=ON", "-DNPAIRS_BUILD_BENCH=OFF", "-DNPAIRS_WERROR=ON",
                 "-DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON"]
    build_cmd = ["cmake", "--build", build, "-j", str(args.jobs)]
    test_cmd = ["ctest", "--test-dir", build, "-L", "unit", "-LE", "emulated", "-j", str(args.jobs),
                "--stop-on-failure", "--output-on-failure"]
    if run(configure, tree, os.path.join(logs, "configure.log")) != 0:
        sys.exit("configure failed: see " + os.path.join(logs, "configure.log"))
    if run(build_cmd, tree, os.path.join(logs, "build-unmutated.log")) != 0:
        sys.exit("the unmutated tree does not build: see " + os.path.join(logs, "build-unmutated.log"))
    if run(test_cmd, tree, os.path.join(logs, "test-unmutated.log")) != 0:
        sys.exit("the unmutated tree fails its tests: see " + os.path.join(logs, "test-unmutated.log"))

    chosen = [m for m in MUTANTS if not args.only or m["id"] in args.only]
    results = []
    for m in chosen:
        path = os.path.join(tree, m["file"])
        with open(path) as f:
            original = f.read()
        count = original.count(m["find"])
        if count != 1:
            results.append((m, "not applicable", "pattern found %d times" % count))
            print("%-40s not applicable (pattern found %d times)" % (m["id"], count), flush=True)
            continue
        start = time.time()
        with open(path, "w") as f:
            f.write(original.replace(m["find"], m["replace"]))
        try:
            blog = os.path.join(logs, m["id"] + ".build.log")
            tlog = os.path.join(logs, m["id"] + ".test.log")
            if run(build_cmd, tree, blog) != 0:
                outcome, detail = "build failed", blog
            elif run(test_cmd, tree, tlog) != 0:
                names = failed_tests(tlog)
                outcome = "killed"
                detail = "%d failing: %s" % (len(names), ", ".join(names[:3]) + (" ..." if len(names) > 3 else ""))
            else:
                outcome, detail = ("equivalent" if m.get("equivalent") else "SURVIVED"), m.get("equivalent", "")
        finally:
            with open(path, "w") as f:
                f.write(original)
            os.utime(path, None)  # newer than the mutant's objects: rebuilt next time
        results.append((m, outcome, detail))
        print("%-40s %-14s %5.0f s  %s" % (m["id"], outcome, time.time() - start, detail), flush=True)

    applicable = [r for r in results if r[1] in ("killed", "SURVIVED", "equivalent")]
    killed = sum(1 for r in results if r[1] == "killed")
    print("\nscore: %d of %d applicable mutants killed (%d equivalent, %d not applicable, %d did not build)" % (
        killed, len(applicable), sum(1 for r in results if r[1] == "equivalent"),
        sum(1 for r in results if r[1] == "not applicable"), sum(1 for r in results if r[1] == "build failed")))
    for m, outcome, detail in results:
        if outcome == "SURVIVED":
            print("  survived: %s (%s): %s" % (m["id"], m["file"], m["why"]))
    sys.exit(0 if all(r[1] != "SURVIVED" for r in results) else 1)


if __name__ == "__main__":
    main()
