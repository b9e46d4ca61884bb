"""test_paired_diff.py - bench/paired_diff.py on real and on bad input.

A real `kvtc eval --task copy-random --json` run (stories260K, 3 trials, the
baselines: ~2 s) is tabulated, and each row's paired difference is checked
against one computed here from the per-trial scores. Then malformed or
mismatched input must give one line on stderr starting "paired_diff:" and
exit 1: never a traceback, and never a table from trials paired wrongly (a
shorter per_trial list used to be cut silently by zip). Run by ctest with
KVTC_CLI set; from the source root."""
import json
import math
import os
import subprocess
import sys
import tempfile

CLI = os.environ.get("KVTC_CLI", "build/kvtc")
SCRIPT = os.path.join("bench", "paired_diff.py")
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def paired(*paths):
    p = subprocess.run([sys.executable, SCRIPT, *paths], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def expect_error(paths, says, what):
    rc, out, err = paired(*paths)
    lines = err.strip().splitlines()
    check(rc == 1 and len(lines) == 1 and lines[0].startswith("paired_diff: ") and says in lines[0]
          and "Traceback" not in err and out == "",
          "%s: exit %d, stdout %r, stderr %r (want one line with %r)" % (what, rc, out[:200], err, says))


def write(d, name, obj):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def main():
    d = tempfile.mkdtemp(prefix="kvtc-test-paired-")
    run = subprocess.run([CLI, "eval", "--model", "data/stories260K.gguf", "--text", "data/persuasion.txt",
                          "--ctx", "512", "--task", "copy-random", "--distances", "200", "--trials", "3", "--json"],
                         capture_output=True, text=True)
    check(run.returncode == 0, "kvtc eval: %s" % run.stderr)
    if run.returncode:
        return
    good = write(d, "good.json", run.stdout)
    r = json.loads(run.stdout)

    # the table: one line per row, its difference the mean of the per-trial differences
    rc, out, err = paired(good)
    check(rc == 0 and err == "", "good input: exit %d, %s" % (rc, err))
    base = next(x for x in r["rows"] if x["name"] == "uncompressed")["per_trial"]
    for x in r["rows"]:
        line = next((ln for ln in out.splitlines() if ln.startswith("| %s |" % x["name"])), None)
        check(line is not None, "no table line for %s" % x["name"])
        if line is None or x["name"] == "uncompressed":
            continue
        diffs = [a - b for a, b in zip(x["per_trial"], base)]
        m = sum(diffs) / len(diffs)
        se = math.sqrt(sum((v - m) ** 2 for v in diffs) / (len(diffs) - 1) / len(diffs))
        check(("%+.2f ± %.2f" % (100 * m, 100 * se)) in line, "%s: %s lacks %+.2f ± %.2f" % (x["name"], line, 100 * m, 100 * se))

    def mutated(name, change):
        obj = json.loads(run.stdout)
        change(obj)
        return write(d, name, obj)

    def shorten(o):
        o["rows"][1]["per_trial"] = o["rows"][1]["per_trial"][:2]

    def other_ctx(o):
        o["ctx"] = 256

    def other_trials_same_count(o):
        # same length, different sequences: the uncompressed rows must agree
        o["rows"][0]["per_trial"][0] += 0.5
        for x in o["rows"][1:]:
            x["name"] = "other-" + x["name"] if x["name"] not in ("hidden (passage replaced)",) else x["name"]

    expect_error([], "usage", "no arguments")
    expect_error([os.path.join(d, "missing.json")], "cannot read", "missing file")
    expect_error([d], "cannot read", "a directory")
    expect_error([write(d, "empty.json", "")], "not JSON", "empty file")
    with open(os.path.join(d, "garbage.json"), "wb") as f:
        f.write(bytes(range(256)) * 8)
    expect_error([os.path.join(d, "garbage.json")], "not JSON", "binary garbage")
    expect_error([write(d, "list.json", [1, 2])], "not the output of kvtc eval", "a JSON list")
    expect_error([write(d, "ppl.json", {"ctx": 512, "methods": []})], "not the output of kvtc eval", "a ppl run")
    expect_error([mutated("norows.json", lambda o: o.update(rows=[]))], "no rows", "no rows")
    expect_error([mutated("nopt.json", lambda o: o["rows"][2].pop("per_trial"))], "row 2 lacks", "no per_trial")
    expect_error([mutated("nan.json", lambda o: o["rows"][2]["per_trial"].__setitem__(0, float("nan")))],
                 "row 2 lacks", "NaN score")
    expect_error([mutated("strpt.json", lambda o: o["rows"][2].__setitem__("point", "200"))], "row 2 lacks",
                 "point as a string")
    expect_error([mutated("short.json", shorten)], "per-trial scores, uncompressed 3", "a shorter per_trial list")
    expect_error([mutated("nounc.json", lambda o: o["rows"].pop(0))], "0 uncompressed rows", "no uncompressed row")
    expect_error([good, mutated("ctx.json", other_ctx)], "ctx 256 differs", "files of other contexts")
    expect_error([good, good], "appears in two files", "the same file twice")
    expect_error([mutated("dup.json", lambda o: o["rows"].insert(2, dict(o["rows"][1])))],
                 "two rows named %s at point 200" % r["rows"][1]["name"], "two rows of one name in a file")
    expect_error([good, mutated("seq.json", other_trials_same_count)], "not the same sequences",
                 "files of other sequences")
    # --exact: recall only; a trial counts 1 only with every answer token right
    expect_error(["--exact", good], "recall runs only", "--exact on a copy run")
    expect_error(["--bogus", good], "usage", "an unknown option")
    rec = mutated("recall.json", lambda o: o.update(task="recall"))
    with open(rec) as f:
        ro = json.load(f)
    ro["rows"][0]["per_trial"] = [1.0, 1.0, 1.0]
    ro["rows"][1]["per_trial"] = [1.0, 0.8, 1.0]
    write(d, "recall.json", ro)
    rc, out, err = paired("--exact", rec)
    line = next((ln for ln in out.splitlines() if ln.startswith("| %s |" % ro["rows"][1]["name"])), "")
    check(rc == 0 and "exact match" in out and "66.67% ± 33.33 | -33.33 ± 33.33" in line,
          "--exact: exit %d, %s, line %r" % (rc, err, line))
    rc, out, err = paired(rec)
    line = next((ln for ln in out.splitlines() if ln.startswith("| %s |" % ro["rows"][1]["name"])), "")
    check(rc == 0 and "93.33% ± 6.67 | -6.67 ± 6.67" in line, "answer tokens: exit %d, %s, line %r" % (rc, err, line))
    for name in os.listdir(d):
        os.remove(os.path.join(d, name))
    os.rmdir(d)


main()
print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
