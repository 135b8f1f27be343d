#!/usr/bin/env python
"""Re-run accelnn's robustness audit and print its table.

    python bench/audit.py [--quick] [--seed N] [--markdown PATH] [--strict]

Five categories, each checking one promise of the library:

1. Bad inputs: a generated catalogue of a few hundred bad arguments to MLP(...), fit,
   set_weights, the queries (predict, predict_proba, forward, loss, loss_and_grads,
   step_function), the scikit-learn estimators and the `accelnn train` / `predict` commands.
   Each must raise ValueError or TypeError (a command: exit status non-zero, one line
   `accelnn CMD: error: ...`, no traceback) whose message names the argument (a heuristic: its
   name, or the file, appears) and, where the catalogue says so, the value or position; and
   the model (weights, optimizer state, RNG, epoch, head, classes), the fitted estimator or
   the command's folders must be unchanged afterwards.
2. Model-file mutations of a real checkpoint (Adam, text classes, written by
   fit(checkpoint=...)): single-bit flips, truncations, header edits (each JSON value replaced
   by a wrong type, a huge or negative number, NaN, nesting, or removed) and member edits
   (arrays removed, reshaped, of another dtype, holding NaN; extra or duplicate members).
   MLP.load (and, for header and member edits, fit(resume_from=...)) must raise ValueError
   naming the file, or load a valid model (which must then predict): "loaded unchanged" when
   everything equals the original, "loaded, differs (valid data)" otherwise.
3. Peak memory of MLP.load on hostile files (a header declaring huge layers, a 2 GiB member
   of zeros stored deflated, members whose .npy header declares a huge shape), each in a
   fresh process reporting its peak RSS, against the bytes of the file's valid members.
4. SIGKILL during fit(checkpoint=...) in a subprocess, at a random moment: the checkpoint
   must load, resuming must equal the uninterrupted run exactly (float64, same seed) and no
   temporary file may remain after the next save.
5. Ctrl-C (SIGINT) the same way: the child must end with KeyboardInterrupt, leaving a
   resumable checkpoint and no temporary file.

Hostile work runs in worker subprocesses with an address-space limit (RLIMIT_AS) and a time
limit per item; a worker that crashes or hangs is recorded as a failure of that item and
restarted at the next one. Everything runs on the numpy backend. The report always exits 0
(with --strict: 1 when anything failed).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before NumPy loads BLAS: one thread, on a shared machine
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pickle  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
import zipfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402

import accelnn  # noqa: E402
from accelnn import MLP  # noqa: E402

SCRIPT = os.path.abspath(__file__)
GiB, MiB = 1 << 30, 1 << 20
WORKER_MEMORY = 2 * GiB  # address space a worker may add to what it has after its imports
PEAK_MEMORY = 3 * GiB  # ... and a peak-memory child (so that a 2 GiB read is measured)
BACKEND = "numpy"
ACCEPTED = (ValueError, TypeError)


# ---------------------------------------------------------------------- small helpers
def same(a, b) -> bool:
    """Deep equality of plain values, dicts, lists and NumPy arrays (dtype and shape too;
    NaN equals NaN)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return False
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def differences(a: dict, b: dict) -> list[str]:
    """The keys whose values differ between two state dicts."""
    return [k for k in sorted(set(a) | set(b)) if not same(a.get(k), b.get(k))]


def model_state(m, ident: bool = True) -> dict:
    """What a rejected call must leave as it was: weights, optimizer (the object too when
    `ident`) and its state, RNG, split seed, counts, schedule record, head, classes, config."""
    s = m.state.saved()
    opt = m.state.optimizer
    state = {"weights": [w for pair in m.get_weights() for w in pair],
             "optimizer": None if opt is None else opt.config(),
             "opt_arrays": s.opt_arrays, "opt_scalars": s.opt_scalars, "rng": s.rng_state,
             "split_seed": s.split_seed, "epoch": s.epoch, "samples_seen": s.samples_seen,
             "run": m.state.run, "head": None if m.head is None else m.head.name,
             "classes": m.classes_, "config": m.get_config()}
    if ident:
        state["optimizer_object"] = id(opt)
    return state


def _plain(v):
    if v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic)):
        return v
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return ("object", type(v).__name__, id(v))


def estimator_state(est) -> dict:
    """A fitted estimator's fitted attributes (names ending in _, private records) and its
    model's state."""
    out = {k: _plain(v) for k, v in vars(est).items()
           if k != "_mlp" and (k.endswith("_") or k.startswith("_"))}
    mlp = getattr(est, "_mlp", None)
    out["_mlp"] = None if mlp is None else model_state(mlp)
    return out


def tree(folder: str) -> dict:
    """{relative path: (size, mtime_ns)} of every file under `folder`."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(root, name)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out[os.path.relpath(p, folder)] = (st.st_size, st.st_mtime_ns)
    return out


def mentions(message: str, word: str) -> bool:
    """`word` appears in `message` as a word of its own (a plural "s" allowed; "_" and "-"
    count as separators): case-sensitively for names of up to two characters (X, y, W, b,
    lr), else in any case. So "seed" is not found in "SeedSequence"."""
    flags = 0 if len(word) <= 2 else re.IGNORECASE
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(word)}s?(?![A-Za-z0-9])", message,
                     flags) is not None


def temporaries(folder: str) -> list[str]:
    """accelnn.files.write_atomic's temporary files in `folder`."""
    return sorted(f for f in os.listdir(folder)
                  if f.startswith(".accelnn-") and f.endswith(".tmp"))


def limit_memory(extra: int) -> int | None:
    """Limit this process's address space to what it maps now plus `extra` bytes (Linux);
    returns the limit, or None where it cannot be set."""
    try:
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm + extra
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        return limit
    except (OSError, StopIteration, ValueError):
        return None


def _status(field_name: str) -> int | None:
    """A size field of /proc/self/status (VmRSS, VmHWM, ...) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak() -> int:
    """Start measuring the peak resident set size from now; returns the baseline to
    subtract. On Linux, writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS.
    (ru_maxrss is no use in a child: Linux carries the parent's high-water mark across fork
    and exec.) Where that is not possible, the baseline is the peak so far."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss = _status("VmRSS")
        if rss is not None:
            return rss
    except OSError:
        pass
    return peak_rss()


def peak_rss() -> int:
    """This process's peak resident set size in bytes: VmHWM where /proc has it, else
    ru_maxrss (KiB on Linux, bytes on macOS)."""
    hwm = _status("VmHWM")
    if hwm is not None:
        return hwm
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def human(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def short(text, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def child_env() -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env["ACCELNN_BACKEND"] = BACKEND
    env.pop("ACCELNN_DTYPE", None)
    return env


class ItemTimeout(BaseException):
    """Raised by the SIGALRM handler when one item runs past its time limit."""


def _alarm(signum, frame):
    raise ItemTimeout()


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- workers
def run_items(kind: str, count: int, work: str, item_timeout: float = 30.0,
              deadline: float | None = None, extra: tuple = (), start_grace: float = 120.0):
    """Run items 0..count-1 of `kind` in worker subprocesses (this script with --_worker),
    each writing one JSON line per item. A worker that dies, or gives no answer for
    item_timeout + 10 s, is recorded as that item's failure ("crash" / "timeout") and a new
    worker starts at the next item. `deadline` (time.time()) ends the run early: the workers
    stop starting items. Returns the records, in item order."""
    records: list[dict] = []
    i = 0
    run = 0
    while i < count and not (deadline and time.time() >= deadline):
        run += 1
        out = os.path.join(work, f"{kind}.{run}.jsonl")
        err_path = out + ".stderr"
        cmd = [sys.executable, SCRIPT, "--_worker", kind, "--_work", work,
               "--_start", str(i), "--_stop", str(count), "--_out", out,
               "--_timeout", str(item_timeout), *extra]
        if deadline:
            cmd += ["--_deadline", repr(deadline)]
        open(out, "w").close()
        with open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=work,
                                    env=child_env())
        offset, last, finished, first = 0, time.monotonic(), False, True
        while True:
            rc = proc.poll()
            with open(out, "rb") as f:
                f.seek(offset)
                chunk = f.read()
            complete = chunk[:chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                rec = json.loads(line)
                if rec.get("end"):
                    finished = True
                    i = rec["next"]
                else:
                    records.append(rec)
                    i = rec["i"] + 1
                    last, first = time.monotonic(), False
            if rc is not None:
                break
            wait = start_grace if first else item_timeout + 10
            if time.monotonic() - last > wait:
                proc.kill()
                proc.wait()
                records.append({"i": i, "outcome": "timeout",
                                "message": f"no answer in {wait:.0f} s; the worker was "
                                           f"killed"})
                i += 1
                break
            time.sleep(0.02)
        if rc is not None and not finished and i < count:
            with open(err_path, errors="replace") as f:
                tail = [ln for ln in f.read().splitlines() if ln.strip()][-3:]
            records.append({"i": i, "outcome": "crash",
                            "message": f"the worker died (exit status {rc}): "
                                       f"{short(' | '.join(tail), 400)}"})
            i += 1
        if finished:
            break
    return records


def worker_main(a) -> int:
    """A worker: items a._start .. a._stop-1 of a._worker, one JSON line each to a._out."""
    warnings.simplefilter("ignore")
    if a._worker == "inputs":
        ctx = InputContext(a._work, a.seed)
        cases = input_cases()
        run = lambda i: run_case(cases[i], ctx, i)  # noqa: E731
    else:
        ctx = FileContext(a._work)
        plan = mutation_plan(a._worker, ctx, a.seed)
        resume = a._worker in ("headers", "members")
        run = lambda i: evaluate_mutation(ctx, plan[i], resume)  # noqa: E731
    limit_memory(WORKER_MEMORY)
    signal.signal(signal.SIGALRM, _alarm)
    with open(a._out, "a") as out:
        def emit(rec):
            out.write(json.dumps(rec) + "\n")
            out.flush()

        for i in range(a._start, a._stop):
            if a._deadline and time.time() >= a._deadline:
                emit({"end": True, "next": i})
                return 0
            signal.setitimer(signal.ITIMER_REAL, a._timeout)
            try:
                rec = run(i)
            except ItemTimeout:
                rec = {"outcome": "timeout", "message": f"no answer in {a._timeout:.0f} s"}
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            rec["i"] = i
            emit(rec)
        emit({"end": True, "next": a._stop})
    return 0


# ---------------------------------------------------------------------- 1. bad inputs
@dataclass
class Case:
    """One bad input. `call(subject, ctx)` makes the bad call on a fresh subject: None (the
    constructor), a model ("clf": float32 softmax with text classes and Adam state, "reg":
    float32 identity with momentum state), a fitted estimator ("est_clf", "est_reg") or a
    folder of its own ("cli"). The message must mention one of `names` and, when given, one
    of `detail` (the value or position)."""

    surface: str
    arg: str
    label: str
    call: Callable
    subject: str = "none"
    names: tuple = ()
    detail: tuple = ()
    expect: tuple = ACCEPTED


class InputContext:
    """The data and files the bad-input catalogue works with (written by prepare_inputs)."""

    def __init__(self, work: str, seed: int = 0):
        self.work, self.seed = work, seed
        self.dir = os.path.join(work, "inputs")
        with np.load(self.p("data.npz")) as d:
            self.X, self.yc, self.yr = d["X"], d["yc"], d["yr"]

    def p(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def subject(self, kind: str, i: int):
        if kind in ("clf", "reg"):
            return MLP.load(self.p(f"{kind}.npz"), backend=BACKEND)
        if kind in ("est_clf", "est_reg"):
            with open(self.p(f"{kind}.pkl"), "rb") as f:
                return pickle.load(f)
        if kind == "cli":
            folder = os.path.join(self.work, "cli-cases", str(i))
            os.makedirs(folder, exist_ok=True)
            return folder
        return None

    def state(self, kind: str, subject):
        if kind in ("clf", "reg"):
            return model_state(subject)
        if kind in ("est_clf", "est_reg"):
            return estimator_state(subject)
        if kind == "cli":
            return {"case": tree(subject), "inputs": tree(self.dir)}
        return None


# fixed positions of the bad values (rows and columns from 0)
NAN_AT, INF_AT, NEG_AT, NONE_AT, TEXT_AT, BIG_AT, MM_NAN_AT, MM_BIG_AT = (
    (3, 1), (5, 2), (31, 0), (2, 0), (5, 1), (4, 2), (9, 1), (12, 2))
N_ROWS = 32


def _with(X, at, value, dtype=None):
    X = np.array(X, dtype=dtype if dtype is not None else X.dtype, copy=True)
    X[at] = value
    return X


def _ragged(X, row):
    rows = X.tolist()
    rows[row] = rows[row][:2]
    return rows


def _listed(X, at, value):
    rows = X.tolist()
    rows[at[0]][at[1]] = value
    return rows


def prepare_inputs(work: str, seed: int) -> None:
    """Write the files the catalogue needs under work/inputs: the data, two trained models,
    a model without optimizer state, garbage, memory-mapped X with bad values, fitted
    estimators and the CSV files of the command-line cases."""
    d = os.path.join(work, "inputs")
    os.makedirs(os.path.join(d, "folder"), exist_ok=True)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, 3))
    yc = np.array(["a", "b", "c"])[np.arange(N_ROWS) % 3]
    yr = X @ rng.normal(size=(3, 2))
    np.savez(os.path.join(d, "data.npz"), X=X, yc=yc, yr=yr)
    clf = MLP([3, 8, 3], "relu", "softmax", seed=seed, dtype="float32", backend=BACKEND)
    clf.fit(X, yc, epochs=2, batch_size=16, optimizer="adam")
    clf.save(os.path.join(d, "clf.npz"))
    reg = MLP([3, 8, 2], "tanh", "identity", seed=seed, dtype="float32", backend=BACKEND)
    reg.fit(X, yr, epochs=2, batch_size=16, optimizer="momentum")
    reg.save(os.path.join(d, "reg.npz"))
    MLP([3, 8, 3], "relu", "softmax", seed=seed, dtype="float32",
        backend=BACKEND).save(os.path.join(d, "noopt.npz"))
    with open(os.path.join(d, "garbage.npz"), "wb") as f:
        f.write(rng.bytes(1000))
    with open(os.path.join(d, "clf.npz"), "rb") as f:
        data = f.read()
    with open(os.path.join(d, "truncated.npz"), "wb") as f:
        f.write(data[:len(data) // 2])
    with open(os.path.join(d, "afile.txt"), "w") as f:
        f.write("not a folder\n")
    np.save(os.path.join(d, "nan.npy"), _with(X, MM_NAN_AT, np.nan))
    np.save(os.path.join(d, "big.npy"), _with(X, MM_BIG_AT, 1e300))
    try:
        from accelnn.sklearn import MLPClassifier, MLPRegressor
    except ImportError:
        pass
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, est, y in (("est_clf", MLPClassifier, yc), ("est_reg", MLPRegressor,
                                                                     yr[:, 0])):
                fitted = est(hidden_layer_sizes=(8,), max_iter=3, batch_size=16,
                             random_state=seed, backend=BACKEND).fit(X, y)
                with open(os.path.join(d, f"{name}.pkl"), "wb") as f:
                    pickle.dump(fitted, f)
    header = "x0,x1,x2,label"
    rows = [f"{a:.6f},{b:.6f},{c:.6f},{lab}" for (a, b, c), lab in zip(X, yc)]

    def csv(name, lines):
        with open(os.path.join(d, name), "w") as f:
            f.write("".join(line + "\n" for line in lines))

    csv("good.csv", [header, *rows])
    csv("goodX.csv", ["x0,x1,x2", *(r.rsplit(",", 1)[0] for r in rows)])
    csv("twofeat.csv", ["x0,x1", *(",".join(r.split(",")[:2]) for r in rows)])

    def cell(row, col, value):  # data row `row` (file line row + 2), column col
        out = list(rows)
        parts = out[row].split(",")
        parts[col] = value
        out[row] = ",".join(parts)
        return [header, *out]

    csv("nan.csv", cell(4, 1, "nan"))
    csv("inf.csv", cell(2, 0, "inf"))
    csv("bigval.csv", cell(6, 2, "1e400"))
    csv("textfeat.csv", cell(5, 2, "abc"))
    ragged = list(rows)
    ragged[3] = ragged[3].rsplit(",", 1)[0]
    csv("ragged.csv", [header, *ragged])
    csv("oneclass.csv", [header, *(r.rsplit(",", 1)[0] + ",a" for r in rows)])
    csv("regtext.csv", [header, *rows])
    csv("headeronly.csv", [header])
    csv("empty.csv", [])
    with open(os.path.join(d, "garbage.csv"), "wb") as f:
        f.write(rng.bytes(500))


def run_cli(argv: list[str], env: dict | None = None) -> dict:
    """accelnn.cli.main(argv) in this process, its output captured: exit status (SystemExit
    included), stdout, stderr and an exception that escaped main (a traceback)."""
    from accelnn.cli import main as cli_main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    rc, escaped = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = cli_main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ItemTimeout:
        raise
    except Exception as exc:
        escaped = f"{type(exc).__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"rc": rc, "stdout": out.getvalue(), "stderr": err.getvalue(), "escaped": escaped}


def judge_cli(result: dict) -> tuple[bool, str, str]:
    """(rejected cleanly, the error message, what is wrong): a non-zero exit status, exactly
    one line `accelnn CMD: error: ...` on stderr and no traceback."""
    err = result["stderr"]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^accelnn( \w+)?: error: ", ln)]
    message = errors[-1] if errors else (result["escaped"] or (lines[-1] if lines else ""))
    if result["escaped"] or "Traceback (most recent call last)" in err:
        return False, message, f"a traceback ({result['escaped'] or 'on stderr'})"
    if result["rc"] in (0, None):
        return False, message, "accepted (exit status 0)"
    if len(errors) != 1:
        return False, message, f"{len(errors)} error lines, expected one"
    return True, message, ""


def run_case(case: Case, ctx: InputContext, i: int) -> dict:
    """Make one bad call and judge it: rejected with the expected kind of error, message
    naming the argument (and value or position), state unchanged."""
    rec = {"surface": case.surface, "arg": case.arg, "label": case.label}
    try:
        subject = ctx.subject(case.subject, i)
        before = ctx.state(case.subject, subject)
    except Exception as exc:
        return {**rec, "outcome": "setup", "message": f"{type(exc).__name__}: {short(exc)}"}
    problems = []
    if case.surface == "CLI":
        result = case.call(subject, ctx)
        ok, message, why = judge_cli(result)
        rec.update(outcome="raised" if result["rc"] not in (0, None) else "accepted",
                   type=f"exit {result['rc']}", message=short(message))
        if not ok:
            problems.append(why)
    else:
        try:
            case.call(subject, ctx)
        except ItemTimeout:
            raise
        except Exception as exc:
            message = str(exc)
            rec.update(outcome="raised", type=type(exc).__name__, message=short(message))
            if not isinstance(exc, case.expect):
                problems.append(f"raised {type(exc).__name__}, not "
                                f"{' or '.join(e.__name__ for e in case.expect)}")
        else:
            message = ""
            rec.update(outcome="accepted", type=None, message="")
            problems.append("accepted (no error)")
    if rec["outcome"] == "raised":
        if case.names and not any(mentions(message, w) for w in case.names):
            problems.append(f"the message does not name {' or '.join(case.names)}")
        if case.detail and not any(mentions(message, w) for w in case.detail):
            problems.append(f"the message does not give {' or '.join(case.detail)}")
    after = ctx.state(case.subject, subject)
    if before is None:
        rec["unchanged"] = None
    else:
        if case.subject == "cli":
            changed = [k for k in before if not same(before[k], after[k])]
            changed = ["files in " + ("the case folder" if k == "case" else "the inputs folder")
                       for k in changed]
        else:
            changed = differences(before, after)
        rec["unchanged"] = not changed
        if changed:
            problems.append("changed: " + ", ".join(changed))
    rec["clear"] = rec["outcome"] == "raised" and not [
        p for p in problems if not p.startswith("changed")]
    rec["problems"] = problems
    return rec


def input_cases() -> list[Case]:
    """The catalogue: a few hundred bad arguments across the public surface."""
    cases: list[Case] = []

    def add(surface, arg, label, call, subject="none", names=None, detail=(),
            expect=ACCEPTED):
        cases.append(Case(surface, arg, label, call, subject,
                          tuple(names) if names else (arg,), tuple(detail), expect))

    row = lambda at: (f"row {at[0]}",)  # noqa: E731

    # -- MLP(...)
    def ctor(**kw):
        args = {"layer_sizes": [3, 8, 3], "backend": BACKEND, **kw}
        return lambda s, c: MLP(**args)

    for value, label in ([[], "empty"], [[3], "one size"], [[3, 0, 3], "a zero"],
                         [[3, -2, 3], "a negative size"], [[3, 2.5, 3], "a fraction"],
                         [[3, True, 3], "a boolean"], ["38", "a string"], [None, "None"],
                         [[3, "a", 3], "text"], [[3, None, 3], "None inside"],
                         [[3, float("nan"), 3], "NaN inside"], [[[3], [3]], "nested lists"],
                         [3, "an int"], [np.array([[3, 3]]), "a 2-D array"],
                         [[3, 10**12, 3], "too large to allocate (6e12 weights)"]):
        add("MLP()", "layer_sizes", label, ctor(layer_sizes=value))
    for value in ("bogus", 5, None, "", ["relu", "bogus"], ["relu"], ["relu", "tanh", "relu"]):
        add("MLP()", "hidden_activation", f"{value!r}",
            ctor(layer_sizes=[3, 8, 8, 3], hidden_activation=value),
            names=("hidden_activation", "activation"))
    for value in ("bogus", 3, None, "relu", ""):
        add("MLP()", "output", f"{value!r}", ctor(output=value))
    for value in (-1.0, float("nan"), float("inf"), "0.1", True, None, [0.1]):
        add("MLP()", "l2", f"{value!r}", ctor(l2=value))
    for value in (-1, "abc", 1.5, [1, -1], object()):
        add("MLP()", "seed", f"{type(value).__name__} {value!r}"[:40], ctor(seed=value))
    for value in ("float16", "bogus", 5, "int32", "complex128", np.float16, ""):
        add("MLP()", "dtype", f"{value!r}", ctor(dtype=value))
    backends = ["bogus", 5, "", "NUMPY-X"]
    try:
        if not accelnn.available_backends()["cupy"].available:
            backends.append("cupy")
    except Exception:
        pass
    for value in backends:
        add("MLP()", "backend", f"{value!r}", ctor(backend=value))
    for value, label in ([[[1, 2], [3, 4]], "2-D"], [[1, 1, 2], "repeated"],
                         [[1, 2, 3, 4], "4 labels for 3 units"], [[], "empty"],
                         ["abc", "a string"], [[None, 1, 2], "None among them"],
                         [[1.0, float("nan"), 2.0], "NaN among them"]):
        add("MLP()", "classes", label, ctor(classes=value))

    # -- fit: X
    def fit(subject="clf", X=None, y=None, **kw):
        def call(m, c):
            args = {"epochs": 1, "batch_size": 16, **kw}
            Xv = c.X if X is None else X(c)
            yv = (c.yc if subject == "clf" else c.yr) if y is None else y(c)
            return m.fit(Xv, yv, **args)
        return call

    X_cases = [
        ("1-D", lambda c: c.X[:, 0], ()),
        ("3-D", lambda c: c.X[:, :, None], ()),
        ("2 features for 3 inputs", lambda c: c.X[:, :2], ()),
        ("no features", lambda c: c.X[:, :0], ()),
        ("no rows", lambda c: c.X[:0], ()),
        ("ragged nested list", lambda c: _ragged(c.X, 7), ("row 7",)),
        (f"NaN at {NAN_AT}", lambda c: _with(c.X, NAN_AT, np.nan), row(NAN_AT)),
        (f"Inf at {INF_AT}", lambda c: _with(c.X, INF_AT, np.inf), row(INF_AT)),
        (f"-Inf at {NEG_AT}", lambda c: _with(c.X, NEG_AT, -np.inf), row(NEG_AT)),
        (f"None in a nested list at {NONE_AT}", lambda c: _listed(c.X, NONE_AT, None),
         row(NONE_AT)),
        (f"NaN in a nested list at {NAN_AT}", lambda c: _listed(c.X, NAN_AT, float("nan")),
         row(NAN_AT)),
        ("text array", lambda c: np.full((N_ROWS, 3), "1.5"), ()),
        (f"object array with text at {TEXT_AT}",
         lambda c: _with(c.X, TEXT_AT, "abc", dtype=object), row(TEXT_AT)),
        ("nested list of strings", lambda c: [["1", "2", "3"]] * N_ROWS, ()),
        ("complex", lambda c: c.X.astype(complex), ()),
        (f"1e300 at {BIG_AT} (too large for float32)", lambda c: _with(c.X, BIG_AT, 1e300),
         row(BIG_AT)),
        (f"3.5e38 at {BIG_AT} (just beyond float32)", lambda c: _with(c.X, BIG_AT, 3.5e38),
         row(BIG_AT)),
        ("None", lambda c: None, ()),
        ("a string", lambda c: "abc", ()),
        ("a dict", lambda c: {"a": 1}, ()),
        ("an object", lambda c: object(), ()),
        ("a scalar", lambda c: 5.0, ()),
        ("a generator", lambda c: (r for r in c.X), ()),
        ("datetime64", lambda c: np.zeros((N_ROWS, 3), "datetime64[s]"), ()),
        ("structured dtype",
         lambda c: np.zeros(N_ROWS, dtype=[("a", "f8"), ("b", "f8"), ("c", "f8")]), ()),
        ("bytes", lambda c: np.full((N_ROWS, 3), b"1"), ()),
    ]
    for label, X, detail in X_cases:
        add("fit", "X", label, fit(X=X), "clf", detail=detail)
    add("fit", "X", f"memory-mapped, NaN at {MM_NAN_AT}",
        fit(X=lambda c: np.load(c.p("nan.npy"), mmap_mode="r"), batch_size=8), "clf",
        detail=row(MM_NAN_AT))
    add("fit", "X", f"memory-mapped, 1e300 at {MM_BIG_AT}",
        fit(X=lambda c: np.load(c.p("big.npy"), mmap_mode="r"), batch_size=8), "clf",
        detail=row(MM_BIG_AT))

    # -- fit: y
    def labels_with(value, at=5):
        def make(c):
            y = c.yc.astype(object)
            y[at] = value
            return y
        return make

    y_cases = [
        ("clf", "31 labels for 32 rows", lambda c: c.yc[:-1], ()),
        ("clf", "None at row 2", labels_with(None, 2), ("row 2",)),
        ("clf", "NaN among text labels at row 4", labels_with(float("nan"), 4), ("row 4",)),
        ("clf", "unknown label 'z'", labels_with("z"), ("'z'",)),
        ("clf", "None", lambda c: None, ()),
        ("clf", "a string", lambda c: "abc", ()),
        ("clf", "2-D with 5 columns", lambda c: np.zeros((N_ROWS, 5)), ()),
        ("clf", "3-D", lambda c: np.zeros((N_ROWS, 3, 2)), ()),
        ("clf", "complex", lambda c: np.ones(N_ROWS, complex), ()),
        ("clf", "integer labels for text classes", lambda c: np.arange(N_ROWS) % 3, ()),
        ("clf", "probabilities not summing to 1",
         lambda c: np.random.default_rng(0).uniform(size=(N_ROWS, 3)), ()),
        ("clf", "one-hot with negative entries", lambda c: -np.eye(3)[np.arange(N_ROWS) % 3],
         ()),
        ("clf", "float labels with Inf at row 6",
         lambda c: _with((np.arange(N_ROWS) % 3).astype(float), 6, np.inf), ("row 6",)),
        ("reg", "NaN at row 3", lambda c: _with(c.yr, (3, 1), np.nan), ("row 3",)),
        ("reg", "Inf at row 8", lambda c: _with(c.yr, (8, 0), np.inf), ("row 8",)),
        ("reg", "1e300 at row 6 (too large for float32)", lambda c: _with(c.yr, (6, 0), 1e300),
         ("row 6", "1e+300")),
        ("reg", "text values", lambda c: np.full((N_ROWS, 2), "x"), ()),
        ("reg", "3 columns for 2 outputs", lambda c: np.zeros((N_ROWS, 3)), ()),
        ("reg", "31 rows for 32", lambda c: c.yr[:-1], ()),
        ("reg", "1-D for 2 outputs", lambda c: c.yr[:, 0], ()),
        ("reg", "None", lambda c: None, ()),
    ]
    for subject, label, y, detail in y_cases:
        add("fit", "y", label, fit(subject, y=y), subject, detail=detail)

    # -- fit: the other arguments
    def fit_args(arg, values, subject="clf", names=None, **base):
        for value in values:
            label = value[1] if isinstance(value, tuple) else repr(value)
            v = value[0] if isinstance(value, tuple) else value
            add("fit", arg, label[:60], fit(subject, **{**base, arg: v}), subject, names=names)

    fit_args("epochs", [0, -1, 1.5, "10", None, True])
    fit_args("batch_size", [0, -5, 2.5, "32", True])
    fit_args("lr", [0, -0.1, float("nan"), float("inf"), "0.1", True, [0.1]])
    fit_args("optimizer", ["bogus", 5, (object(), "object()"), ""])
    fit_args("lr_schedule", ["bogus", 5, None, (object(), "object()")])
    v_names = ("validation",)

    for label, make in [
        ("a 1-tuple", lambda c: (c.X,)), ("a string", lambda c: "abc"),
        ("X with 2 features", lambda c: (c.X[:, :2], c.yc)),
        ("y of 31 labels", lambda c: (c.X, c.yc[:-1])),
        (f"X with NaN at {NAN_AT}", lambda c: (_with(c.X, NAN_AT, np.nan), c.yc)),
        ("an unknown label", lambda c: (c.X, labels_with("z")(c))),
        ("an int", lambda c: 5), ("(None, None)", lambda c: (None, None)),
        ("a 3-tuple", lambda c: (c.X, c.yc, c.X))]:
        def call(m, c, make=make):
            return m.fit(c.X, c.yc, epochs=1, batch_size=16, validation_data=make(c))
        add("fit", "validation_data", label, call, "clf", names=v_names,
            detail=row(NAN_AT) if "NaN" in label else ())
    fit_args("validation_split", [1.0, -0.1, 1.5, "0.2", float("nan"), 0.999, True])
    fit_args("early_stopping", ["yes", 5, (True, "True without validation data"),
                                (accelnn.EarlyStopping("val_loss"),
                                 "EarlyStopping('val_loss') without validation data")],
             names=("early_stopping", "early stopping", "validation"))
    fit_args("early_stopping", [(accelnn.EarlyStopping("accuracy"),
                                 "EarlyStopping('accuracy') on a regressor")], "reg",
             names=("early_stopping", "accuracy"))
    # A bare name is one metric, and None no metric (as Keras takes them): not bad inputs.
    fit_args("metrics", [["bogus"], 5, [None]], names=("metric",))
    fit_args("metrics", [["accuracy"]], "reg", names=("metric", "accuracy"))
    fit_args("callbacks", [[5], 5, ["abc"], [None]], names=("callback",))  # None: none
    fit_args("verbose", [3, -1, "yes", 1.5, None])

    def path_arg(arg, make, label, names=None, expect=ACCEPTED, **kw):
        def call(m, c):
            args = {"epochs": 1, "batch_size": 16, arg: make(c), **kw}
            return m.fit(c.X, c.yc, **args)
        add("fit", arg, label, call, "clf", names=names, expect=expect)

    for make, label in ((lambda c: c.p("folder"), "an existing folder"),
                        (lambda c: "/nonexistent-accelnn-audit/x.npz", "a missing folder"),
                        (lambda c: 5, "an int"), (lambda c: "", "an empty string"),
                        (lambda c: c.p("folder") + os.sep, "a path ending in /"),
                        (lambda c: os.path.join(c.p("afile.txt"), "x.npz"),
                         "a path under a file")):
        path_arg("checkpoint", make, label)
    r_names = lambda *files: ("resume_from",) + files  # noqa: E731
    # A file that cannot be read is an I/O error (OSError naming it), as open() raises.
    io_error = (*ACCEPTED, OSError)
    for make, label, names, kw in (
            (lambda c: c.p("missing.npz"), "a missing file", r_names("missing.npz"),
             {"expect": io_error}),
            (lambda c: c.p("garbage.npz"), "garbage bytes", r_names("garbage.npz"), {}),
            (lambda c: c.p("truncated.npz"), "a truncated file", r_names("truncated.npz"),
             {}),
            (lambda c: c.p("reg.npz"), "a checkpoint of another network", r_names("reg.npz"),
             {}),
            (lambda c: c.p("clf.npz"), "a checkpoint already at epochs", r_names("clf.npz"),
             {}),
            (lambda c: c.p("noopt.npz"), "a file without optimizer state",
             r_names("noopt.npz"), {}),
            (lambda c: c.p("clf.npz"), "with optimizer='adam'",
             r_names("clf.npz", "optimizer"), {"optimizer": "adam", "epochs": 5}),
            (lambda c: 5, "an int", r_names(), {}),
            (lambda c: "", "an empty string", r_names(), {}),
            (lambda c: c.p("folder"), "a folder", r_names("folder"), {"expect": io_error})):
        path_arg("resume_from", make, label, names=names, **kw)
    fit_args("shuffle", ["no", 2])

    # -- set_weights
    def sw(make):
        def call(m, c):
            w = [list(p) for p in m.get_weights()]
            return m.set_weights(make(w))
        return call

    def put(layer, k, fn):
        def make(w):
            w[layer][k] = fn(w[layer][k])
            return w
        return make

    w_names = ("weights", "set_weights", "layer")
    for label, make, detail in [
            ("an empty list", lambda w: [], ()),
            ("one pair for two layers", lambda w: w[:1], ()),
            ("W1 transposed", put(0, 0, lambda a: a.T), ("layer 1",)),
            ("b2 one value short", put(1, 1, lambda a: a[:-1]), ("layer 2",)),
            ("W1 with NaN at (1, 2)", put(0, 0, lambda a: _with(a, (1, 2), np.nan)),
             ("layer 1",)),
            ("b1 with Inf", put(0, 1, lambda a: _with(a, 0, np.inf)), ("layer 1",)),
            ("W2 as text", put(1, 0, lambda a: a.astype(str)), ("layer 2",)),
            ("W1 complex", put(0, 0, lambda a: a.astype(complex)), ("layer 1",)),
            ("W2 with 1e300 (too large for float32)",
             put(1, 0, lambda a: _with(a.astype(float), (0, 0), 1e300)), ("layer 2",)),
            ("None", lambda w: None, ()), ("an int", lambda w: 5, ()),
            ("a pair of three arrays", lambda w: [w[0] + [w[0][1]], w[1]], ("layer 1",)),
            ("W1 object array with None", put(0, 0, lambda a: _with(a, (0, 0), None,
                                                                   dtype=object)),
             ("layer 1",)),
            ("W1 a ragged nested list", put(0, 0, lambda a: _ragged(a, 1)), ("layer 1",)),
            ("W1 3-D", put(0, 0, lambda a: a[:, :, None]), ("layer 1",)),
            ("a string per layer", lambda w: ["ab", "cd"], ())]:
        add("set_weights", "weights", label, sw(make), "clf", names=w_names, detail=detail)

    # -- queries
    def query(method, X=None, y=None, subject="clf", **kw):
        def call(m, c):
            Xv = c.X if X is None else X(c)
            if method in ("loss", "loss_and_grads"):
                yv = (c.yc if subject == "clf" else c.yr) if y is None else y(c)
                return getattr(m, method)(Xv, yv)
            if method == "step_function":
                return m.step_function(Xv, c.yc if y is None else y(c), **kw)
            return getattr(m, method)(Xv)
        return call

    for method, arg, label, X, y, subject, detail, kw in [
            ("predict", "X", f"NaN at {NAN_AT}", lambda c: _with(c.X, NAN_AT, np.nan), None,
             "clf", row(NAN_AT), {}),
            ("predict", "X", "2 features for 3 inputs", lambda c: c.X[:, :2], None, "clf",
             (), {}),
            ("predict", "X", "1-D", lambda c: c.X[0], None, "clf", (), {}),
            ("predict", "X", "no rows", lambda c: c.X[:0], None, "clf", (), {}),
            ("predict", "X", "text", lambda c: np.full((4, 3), "a"), None, "clf", (), {}),
            ("predict", "X", "None", lambda c: None, None, "clf", (), {}),
            ("predict", "X", f"1e300 at {BIG_AT}", lambda c: _with(c.X, BIG_AT, 1e300), None,
             "clf", row(BIG_AT), {}),
            ("predict_proba", "X", f"Inf at {INF_AT}", lambda c: _with(c.X, INF_AT, np.inf),
             None, "clf", row(INF_AT), {}),
            ("predict_proba", "X", "ragged nested list", lambda c: _ragged(c.X, 7), None,
             "clf", ("row 7",), {}),
            ("forward", "X", "complex", lambda c: c.X.astype(complex), None, "clf", (), {}),
            ("loss", "y", "unknown label 'z'", None, labels_with("z"), "clf", ("'z'",), {}),
            ("loss", "y", "31 labels for 32 rows", None, lambda c: c.yc[:-1], "clf", (), {}),
            ("loss", "y", "text values for a regressor", None,
             lambda c: np.full((N_ROWS, 2), "x"), "reg", (), {}),
            ("loss_and_grads", "X", f"-Inf at {NEG_AT}", lambda c: _with(c.X, NEG_AT, -np.inf),
             None, "clf", row(NEG_AT), {}),
            ("step_function", "lr", "-1", None, None, "clf", (), {"lr": -1.0}),
            ("step_function", "optimizer", "'bogus'", None, None, "clf", (),
             {"optimizer": "bogus"}),
            ("step_function", "X", f"NaN at {NAN_AT}", lambda c: _with(c.X, NAN_AT, np.nan),
             None, "clf", row(NAN_AT), {})]:
        add("queries", arg, f"{method}: {label}", query(method, X, y, subject, **kw), subject,
            detail=detail)
    add("queries", "predict_proba", "predict_proba of a regressor", query("predict_proba",
        subject="reg"), "reg", names=("predict_proba", "classifier"),
        expect=(ValueError, TypeError, RuntimeError))

    # -- scikit-learn estimators
    def est(kind, params=None, data=None, method="fit"):
        def call(e, c):
            if params:
                e.set_params(**params)
            if data is not None:
                X, y = data(c)
            else:
                X, y = c.X, (c.yc if kind == "est_clf" else c.yr[:, 0])
            if method in ("predict", "predict_proba"):
                return getattr(e, method)(X)
            return getattr(e, method)(X, y)
        return call

    est_params = [
        ("hidden_layer_sizes", 0), ("hidden_layer_sizes", (-1,)),
        ("hidden_layer_sizes", "abc"), ("hidden_layer_sizes", (2.5,)),
        ("hidden_layer_sizes", None), ("hidden_layer_sizes", [8, 0]),
        ("activation", "bogus"), ("solver", "bogus"),
        ("alpha", -1.0), ("alpha", float("nan")), ("alpha", "0.1"),
        ("batch_size", 0), ("batch_size", "big"), ("batch_size", 2.5),
        ("learning_rate", "bogus", {"solver": "sgd"}),
        ("learning_rate_init", 0.0), ("learning_rate_init", -1.0),
        ("learning_rate_init", float("inf")), ("max_iter", 0), ("max_iter", 1.5),
        ("tol", -1.0), ("momentum", -1.0, {"solver": "sgd"}),
        ("momentum", 2.0, {"solver": "sgd"}), ("beta_1", 1.5), ("beta_2", -0.1),
        ("epsilon", 0.0), ("epsilon", -1.0),
        ("validation_fraction", 1.0, {"early_stopping": True}),
        ("validation_fraction", 0.0, {"early_stopping": True}),
        ("n_iter_no_change", 0), ("dtype", "bogus"), ("dtype", "float16"),
        ("backend", "bogus"), ("random_state", "abc"),
        ("power_t", "x", {"solver": "sgd", "learning_rate": "invscaling"})]
    for item in est_params:
        name, value = item[0], item[1]
        extra = item[2] if len(item) > 2 else {}
        add("estimators", name, f"MLPClassifier({name}={value!r})",
            est("est_clf", {name: value, **extra}), "est_clf")
    for name, value in (("hidden_layer_sizes", (-1,)), ("alpha", -1.0),
                        ("learning_rate_init", 0.0), ("batch_size", 0), ("dtype", "bogus"),
                        ("max_iter", 0)):
        add("estimators", name, f"MLPRegressor({name}={value!r})",
            est("est_reg", {name: value}), "est_reg")
    for kind, method, arg, label, data, names in [
            ("est_clf", "fit", "X", f"NaN at {NAN_AT}",
             lambda c: (_with(c.X, NAN_AT, np.nan), c.yc), ()),
            ("est_clf", "fit", "X", "1-D", lambda c: (c.X[:, 0], c.yc), ()),
            ("est_clf", "fit", "X", "text", lambda c: (np.full((N_ROWS, 3), "a"), c.yc), ()),
            ("est_clf", "fit", "y", "one class", lambda c: (c.X, np.full(N_ROWS, "a")),
             ("class",)),
            ("est_clf", "fit", "y", "31 labels", lambda c: (c.X, c.yc[:-1]), ()),
            ("est_clf", "partial_fit", "y", "a label outside classes_",
             lambda c: (c.X, labels_with("z")(c)), ("y", "label", "class")),
            ("est_clf", "predict", "X", "2 features for 3",
             lambda c: (c.X[:, :2], None), ()),
            ("est_clf", "predict_proba", "X", f"Inf at {INF_AT}",
             lambda c: (_with(c.X, INF_AT, np.inf), None), ()),
            ("est_reg", "fit", "y", "NaN", lambda c: (c.X, _with(c.yr[:, 0], 3, np.nan)), ()),
            ("est_reg", "fit", "y", "text", lambda c: (c.X, np.full(N_ROWS, "x")), ()),
            ("est_reg", "partial_fit", "X", "2 features for 3",
             lambda c: (c.X[:, :2], c.yr[:, 0]), ())]:
        est_name = "MLPClassifier" if kind == "est_clf" else "MLPRegressor"
        add("estimators", arg, f"{est_name}.{method}: {arg} {label}",
            est(kind, data=data, method=method), kind, names=names or (arg,))

    # -- the command line
    def cli(argv, env=None):
        def call(folder, c):
            return run_cli([a.format(d=c.dir, out=os.path.join(folder, "out"))
                            for a in argv], env)
        return call

    train = ["train", "{d}/good.csv", "--epochs", "2", "--layers", "4", "--quiet",
             "--backend", BACKEND, "--output", "{out}.npz"]

    def t(*extra, data=None):
        argv = list(train)
        if data is not None:
            argv[1] = data
        return argv + list(extra)

    cli_cases = [
        ("--layers", "0", t("--layers", "0"), ("layers",)),
        ("--layers", "abc", t("--layers", "abc"), ("layers",)),
        ("--layers", "-3", t("--layers=-3"), ("layers",)),
        ("--batch-size", "0", t("--batch-size", "0"), ("batch-size", "batch_size")),
        ("--batch-size", "x", t("--batch-size", "x"), ("batch-size", "batch_size")),
        ("--batch-size", "-1", t("--batch-size=-1"), ("batch-size", "batch_size")),
        ("--epochs", "0", t("--epochs", "0"), ("epochs",)),
        ("--epochs", "-3", t("--epochs=-3"), ("epochs",)),
        ("--epochs", "x", t("--epochs", "x"), ("epochs",)),
        ("--epochs", "1.5", t("--epochs", "1.5"), ("epochs",)),
        ("--lr", "-1", t("--lr=-1"), ("lr",)),
        ("--lr", "nan", t("--lr", "nan"), ("lr",)),
        ("--lr", "0", t("--lr", "0"), ("lr",)),
        ("--lr", "inf", t("--lr", "inf"), ("lr",)),
        ("--lr", "x", t("--lr", "x"), ("lr",)),
        ("--validation-split", "1.5", t("--validation-split", "1.5"),
         ("validation-split", "validation_split")),
        ("--validation-split", "-0.2", t("--validation-split=-0.2"),
         ("validation-split", "validation_split")),
        ("--validation-split", "1", t("--validation-split", "1"),
         ("validation-split", "validation_split")),
        ("--validation-split", "nan", t("--validation-split", "nan"),
         ("validation-split", "validation_split")),
        ("--dtype", "bogus", t("--dtype", "bogus"), ("dtype",)),
        ("--dtype", "float16", t("--dtype", "float16"), ("dtype",)),
        ("--activation", "bogus", t("--activation", "bogus"), ("activation",)),
        ("--optimizer", "bogus", t("--optimizer", "bogus"), ("optimizer",)),
        ("--task", "bogus", t("--task", "bogus"), ("task",)),
        ("--task", "regress on text targets", t("--task", "regress", data="{d}/regtext.csv"),
         ("task", "regress")),
        ("--header", "bogus", t("--header", "bogus"), ("header",)),
        ("--target", "a missing column name", t("--target", "nosuch"), ("target", "nosuch")),
        ("--target", "index 99", t("--target", "99"), ("target", "99")),
        ("--target", "index -99", t("--target=-99"), ("target", "-99")),
        ("--delimiter", "';' for a comma file", t("--delimiter", ";"),
         ("delimiter", "good.csv")),
        ("--seed", "-1", t("--seed=-1"), ("seed",)),
        ("--seed", "x", t("--seed", "x"), ("seed",)),
        ("--backend", "bogus", t("--backend", "bogus"), ("backend",)),
        ("DATA", "a missing file", t(data="{d}/missing.csv"), ("missing.csv",)),
        ("DATA", "NaN in a cell", t(data="{d}/nan.csv"), ("nan.csv",)),
        ("DATA", "Inf in a cell", t(data="{d}/inf.csv"), ("inf.csv",)),
        ("DATA", "1e400 in a cell", t(data="{d}/bigval.csv"), ("bigval.csv",)),
        ("DATA", "a ragged row", t(data="{d}/ragged.csv"), ("ragged.csv",)),
        ("DATA", "text in a feature cell", t(data="{d}/textfeat.csv"), ("textfeat.csv",)),
        ("DATA", "one class", t(data="{d}/oneclass.csv"), ("oneclass.csv", "class")),
        ("DATA", "an empty file", t(data="{d}/empty.csv"), ("empty.csv",)),
        ("DATA", "a header only", t(data="{d}/headeronly.csv"), ("headeronly.csv",)),
        ("DATA", "binary garbage", t(data="{d}/garbage.csv"), ("garbage.csv",)),
        ("DATA", "a folder", t(data="{d}/folder"), ("folder",)),
        ("--output", "a folder", t("--output", "{d}/folder"), ("output",)),
        ("--output", "in a missing folder", t("--output", "{d}/missing/m.npz"), ("output",)),
        ("--output", "the data file", t("--output", "{d}/good.csv"), ("output",)),
        ("--plot", "the same file as --output", t("--plot", "{out}.npz"), ("plot", "output")),
    ]
    for arg, label, argv, names in cli_cases:
        add("CLI", arg, f"accelnn train {arg} {label}", cli(argv), "cli", names=names)
    add("CLI", "ACCELNN_DTYPE", "accelnn train with ACCELNN_DTYPE=bogus",
        cli(train, {"ACCELNN_DTYPE": "bogus"}), "cli")
    predict = ["predict", "{d}/clf.npz", "{d}/goodX.csv", "--backend", BACKEND,
               "--output", "{out}.csv"]

    def pr(*extra, model=None, data=None):
        argv = list(predict)
        if model is not None:
            argv[1] = model
        if data is not None:
            argv[2] = data
        return argv + list(extra)

    for arg, label, argv, names in [
            ("MODEL", "a missing file", pr(model="{d}/missing.npz"), ("missing.npz",)),
            ("MODEL", "garbage bytes", pr(model="{d}/garbage.npz"), ("garbage.npz",)),
            ("MODEL", "a truncated file", pr(model="{d}/truncated.npz"), ("truncated.npz",)),
            ("MODEL", "a CSV file", pr(model="{d}/good.csv"), ("good.csv",)),
            ("MODEL", "a folder", pr(model="{d}/folder"), ("folder",)),
            ("DATA", "2 features for 3 inputs", pr(data="{d}/twofeat.csv"),
             ("twofeat.csv",)),
            ("DATA", "NaN in a cell", pr("--target", "label", data="{d}/nan.csv"),
             ("nan.csv",)),
            ("DATA", "a missing file", pr(data="{d}/missing.csv"), ("missing.csv",)),
            ("--output", "a folder", pr("--output", "{d}/folder"), ("output",)),
            ("--output", "the model file", pr("--output", "{d}/clf.npz"), ("output",)),
            ("--output", "the data file", pr("--output", "{d}/goodX.csv"), ("output",)),
            ("--target", "a missing column", pr("--target", "nosuch", data="{d}/good.csv"),
             ("target", "nosuch")),
            ("--header", "bogus", pr("--header", "bogus"), ("header",)),
            ("--backend", "bogus", pr("--backend", "bogus"), ("backend",))]:
        add("CLI", arg, f"accelnn predict {arg} {label}", cli(argv), "cli", names=names)
    return cases


def tally_inputs(records: list[dict], cases: list[Case] | None = None) -> Section:
    """Rows per surface (tried, rejected with a clear error, state unchanged) and a total, and
    the failures. A record without a surface (a crashed or timed-out worker) takes its
    labels from `cases`."""
    order = ["MLP()", "fit", "set_weights", "queries", "estimators", "CLI"]
    titles = {"MLP()": "MLP(...)", "fit": "fit(...)", "set_weights": "set_weights(...)",
              "queries": "predict / predict_proba / forward / loss / step_function",
              "estimators": "MLPClassifier / MLPRegressor", "CLI": "accelnn train / predict"}
    counts: dict[str, list[int]] = {}
    failures = []
    for rec in records:
        if "surface" not in rec and cases is not None:  # a crash or a timeout: the state
            c = cases[rec["i"]]                           # was not seen to stay unchanged
            rec = {**rec, "surface": c.surface, "arg": c.arg, "label": c.label,
                   "unchanged": None if c.subject == "none" else False}
        surface = rec.get("surface", "?")
        tried, clear, unchanged, stateful = counts.setdefault(surface, [0, 0, 0, 0])
        ok = bool(rec.get("clear"))
        same_state = rec.get("unchanged")
        counts[surface] = [tried + 1, clear + ok, unchanged + (same_state is True),
                           stateful + (same_state is not None)]
        if not ok or same_state is False:
            problems = rec.get("problems") or [rec.get("outcome", "?")]
            what = f"{rec.get('type')}: {rec.get('message')}" if rec.get("type") else \
                rec.get("message", "")
            failures.append(f"bad input, {surface} `{rec.get('arg')}` ({rec.get('label')}): "
                            f"{'; '.join(problems)}" + (f". {what}" if what else ""))
    rows = []
    total = [0, 0, 0, 0]
    for surface in order + sorted(set(counts) - set(order)):
        if surface not in counts:
            continue
        tried, clear, unchanged, stateful = counts[surface]
        total = [a + b for a, b in zip(total, counts[surface])]
        rows.append(Row(f"bad inputs: {titles.get(surface, surface)}", f"{tried:,}",
                        f"{clear:,}", _of(unchanged, stateful, tried)))
    if rows:
        tried, clear, unchanged, stateful = total
        rows.append(Row("**bad inputs, all**", f"**{tried:,}**", f"**{clear:,}**",
                        f"**{_of(unchanged, stateful, tried)}**"))
    return Section(rows, failures)


def _of(n: int, of: int, tried: int) -> str:
    if of == 0:
        return "n/a (no model yet)"
    return f"{n:,}" if of == tried else f"{n:,} of {of:,} with state"


@dataclass
class Row:
    category: str
    tried: str
    ok: str
    unchanged: str
    memory: str = ""


@dataclass
class Section:
    rows: list[Row]
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------- 2. model files
SIGNAL_LAYERS = [3, 16, 3]
FILE_LAYERS = [3, 8, 3]
FILE_EPOCHS = 3
DEEP = "@@deep-nesting@@"
DEPTH = 100_000


def _file_data(seed: int, rows: int = N_ROWS):
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(rows, 3))
    y = np.array(["a", "b", "c"])[np.argmax(X, axis=1)]
    y[:3] = ["a", "b", "c"]
    return X, y


def _file_model(seed: int):
    return MLP(FILE_LAYERS, "tanh", "softmax", seed=seed, dtype="float64", backend=BACKEND)


def prepare_files(work: str, seed: int) -> str:
    """The checkpoint the mutations start from: [3, 8, 3] tanh/softmax, float64, Adam, text
    classes, written by fit(checkpoint=...) after 3 epochs."""
    d = os.path.join(work, "files")
    os.makedirs(d, exist_ok=True)
    X, y = _file_data(seed)
    np.savez(os.path.join(d, "data.npz"), X=X, y=y, seed=seed)
    path = os.path.join(d, "base.npz")
    _file_model(seed).fit(X, y, epochs=FILE_EPOCHS, batch_size=16, optimizer="adam",
                          checkpoint=path)
    return path


class FileContext:
    """The base checkpoint, its parts and its loaded state, for the mutation workers."""

    def __init__(self, work: str):
        d = os.path.join(work, "files")
        self.base = os.path.join(d, "base.npz")
        with open(self.base, "rb") as f:
            self.data = f.read()
        with np.load(self.base, allow_pickle=False) as z:
            self.arrays = {k: z[k] for k in z.files}
        self.header = json.loads(str(self.arrays["header"]))
        with np.load(os.path.join(d, "data.npz")) as z:
            self.X, self.y, self.seed = z["X"], z["y"], int(z["seed"])
        self.original = model_state(MLP.load(self.base, backend=BACKEND), ident=False)
        self.path = os.path.join(d, f"mutated-{os.getpid()}.npz")

    def savez(self, arrays: dict) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def with_header(self, text: str) -> bytes:
        return self.savez({**self.arrays, "header": np.array(text)})


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _paths(obj, prefix=()):
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for k, v in items:
        yield prefix + (k,), v
        if isinstance(v, (dict, list)) and v:
            yield from _paths(v, prefix + (k,))


def _edited(header: dict, path: tuple, value=None, remove=False) -> dict:
    h = json.loads(json.dumps(header))
    obj = h
    for k in path[:-1]:
        obj = obj[k]
    if remove:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value
    return h


def _dump(header) -> str:
    text = json.dumps(header)
    return text.replace(json.dumps(DEEP), "[" * DEPTH + "]" * DEPTH)


def header_edits(header: dict) -> list[tuple[str, Callable[[], str]]]:
    """(label, header text) for every JSON value replaced by each wrong value, or removed,
    and a few edits of the whole header."""
    edits = []
    for path, orig in _paths(header):
        name = ".".join(map(str, path))
        values = [("null", None), ("true", True), ("false", False), ('"x"', "x"), ('""', ""),
                  ("-1", -1), ("0", 0), ("1", 1), ("2**63", 2**63), ("2**64 + 1", 2**64 + 1),
                  ("10**30", 10**30), ("-10**30", -10**30), ("1.5", 1.5), ("1e308", 1e308),
                  ("NaN", math.nan), ("Infinity", math.inf), ("-Infinity", -math.inf),
                  ("[]", []), ("{}", {}), ("[value]", [orig]), ('{"v": value}', {"v": orig}),
                  (f"{DEPTH:,} nested lists", DEEP)]
        for label, value in values:
            if same(value, orig):
                continue
            edits.append((f"{name} = {label}",
                          lambda p=path, v=value: _dump(_edited(header, p, v))))
        edits.append((f"{name} removed", lambda p=path: _dump(_edited(header, p,
                                                                      remove=True))))
    text = json.dumps(header)
    for label, make in (("the header is a list", lambda: json.dumps([header])),
                        ("the header is a string", lambda: json.dumps(text)),
                        ("the header is a number", lambda: "5"),
                        ("the header is null", lambda: "null"),
                        ("the header is empty", lambda: ""),
                        ("the header is not JSON", lambda: text[:-1]),
                        ("the header has trailing garbage", lambda: text + "x"),
                        ("the header is nested 100,000 deep", lambda: _dump(DEEP)),
                        ("a key repeated with another value",
                         lambda: text[:-1] + ', "epoch": -1}'),
                        ("the header as a 1 MB JSON string value",
                         lambda: _dump({**header, "pad": "x" * 1_000_000}))):
        edits.append((label, make))
    return edits


def _rezip(data: bytes, replace: dict | None = None, add: list | None = None,
           compression=zipfile.ZIP_STORED) -> bytes:
    """The zip `data` with members replaced ({name: bytes or None to drop}) or added
    ([(name, bytes)]), written with `compression`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, \
            zipfile.ZipFile(out, "w", compression) as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for info in src.infolist():
            body = src.read(info)
            if replace and info.filename in replace:
                body = replace[info.filename]
                if body is None:
                    continue
            dst.writestr(info.filename, body)
        for name, body in add or []:
            dst.writestr(name, body)
    return out.getvalue()


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def npy_header(descr: str, shape: tuple) -> bytes:
    """A version 1.0 .npy header declaring `descr` and `shape` (what follows is up to us)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}"
    pad = (-(10 + len(text) + 1)) % 64
    text = text + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")


def member_edits(ctx: FileContext) -> list[tuple[str, Callable[[], bytes]]]:
    """(label, file bytes) for members removed, reshaped, of other dtypes, holding NaN or
    Inf, pickled objects; bad classes and headers; extra, duplicate, compressed, renamed
    members; bytes before or after the zip."""
    edits = []
    arrays = ctx.arrays

    def swap(name, fn):
        return lambda: ctx.savez({**arrays, name: fn(arrays[name])})

    for name, a in arrays.items():
        if name == "header":
            continue
        edits.append((f"{name} removed",
                      lambda n=name: ctx.savez({k: v for k, v in arrays.items() if k != n})))
        changes = [("flattened", lambda a: a.reshape(-1) if a.ndim > 1 else a.reshape(1, -1)),
                   ("one value more", lambda a: np.append(a.reshape(-1), a.reshape(-1)[:1])),
                   ("0-d", lambda a: np.array(a.reshape(-1)[0])),
                   ("empty", lambda a: a[:0]),
                   ("complex", lambda a: a.astype(complex)),
                   ("as text", lambda a: a.astype(str)),
                   ("as pickled objects", lambda a: a.astype(object)),
                   ("as bytes", lambda a: a.astype("S")),
                   ("as int64", lambda a: a.astype(np.int64) if a.dtype.kind != "U" else
                    np.arange(a.size))]
        if a.ndim == 2:
            changes.append(("transposed", lambda a: a.T))
        if a.dtype.kind == "f":
            changes += [("with NaN", lambda a: _with(a, (0,) * a.ndim, np.nan)),
                        ("with Inf", lambda a: _with(a, (0,) * a.ndim, np.inf)),
                        ("with -Inf", lambda a: _with(a, (-1,) * a.ndim, -np.inf)),
                        ("as float16", lambda a: a.astype(np.float16)),
                        ("big-endian", lambda a: a.astype(a.dtype.newbyteorder(">")))]
        for label, fn in changes:
            edits.append((f"{name} {label}", swap(name, fn)))
    for label, value in (("2-D classes", np.array([["a", "b", "c"]])),
                         ("repeated classes", np.array(["a", "a", "b"])),
                         ("4 classes for 3 units", np.array(["a", "b", "c", "d"])),
                         ("NaN among float classes", np.array([0.0, np.nan, 2.0])),
                         ("unsorted classes", np.array(["c", "b", "a"])),
                         ("integer classes", np.array([0, 1, 2]))):
        edits.append((label, lambda v=value: ctx.savez({**arrays, "classes": v})))
    for label, value in (("the header an int array", np.arange(3)),
                         ("the header as bytes", np.array(str(arrays["header"]).encode())),
                         ("the header 2-D", np.array([[str(arrays["header"])]])),
                         ("the header as a pickled object",
                          np.array([json.loads(str(arrays["header"]))], dtype=object))):
        edits.append((label, lambda v=value: ctx.savez({**arrays, "header": v})))
    edits.append(("header removed",
                  lambda: ctx.savez({k: v for k, v in arrays.items() if k != "header"})))
    data = ctx.data
    w1 = arrays["W1"]
    edits += [
        ("an extra member", lambda: ctx.savez({**arrays, "extra": np.zeros(3)})),
        ("W1.npy twice, the second with other values",
         lambda: _rezip(data, add=[("W1.npy", _npy(w1 + 1.0))])),
        ("W1.npy twice, the second with NaN",
         lambda: _rezip(data, add=[("W1.npy", _npy(_with(w1, (0, 0), np.nan)))])),
        ("every member deflated", lambda: _rezip(data, compression=zipfile.ZIP_DEFLATED)),
        ("W1.npy renamed W1.NPY", lambda: _rezip(data, replace={"W1.npy": None},
                                                add=[("W1.NPY", _npy(w1))])),
        ("a member with a path", lambda: _rezip(data, add=[("../../evil.npy",
                                                              _npy(np.zeros(2)))])),
        ("a member that is not .npy", lambda: _rezip(data, add=[("notes.txt", b"hello")])),
        ("W1.npy not a .npy", lambda: _rezip(data, replace={"W1.npy": b"hello"})),
        ("W1.npy declaring 10**12 values", lambda: _rezip(data, replace={
            "W1.npy": npy_header("<f8", (10**6, 10**6)) + w1.tobytes()})),
        ("W1.npy declaring 3 x 2**62 values", lambda: _rezip(data, replace={
            "W1.npy": npy_header("<f8", (3, 2**62)) + w1.tobytes()})),
        ("W1.npy declaring a negative shape", lambda: _rezip(data, replace={
            "W1.npy": npy_header("<f8", (3, -8)) + w1.tobytes()})),
        ("W1.npy declaring a 1 GiB string dtype", lambda: _rezip(data, replace={
            "W1.npy": npy_header("<U268435456", (3, 8)) + w1.tobytes()})),
        ("100 bytes before the zip", lambda: b"\0" * 100 + data),
        ("100 bytes after the zip", lambda: data + b"\0" * 100),
        ("the file twice", lambda: data + data),
        ("an empty zip", lambda: _rezip(data, replace={n: None for n in
                                                     zipfile.ZipFile(io.BytesIO(data))
                                                     .namelist()})),
        ("an empty file", lambda: b""),
    ]
    return edits


def mutation_plan(kind: str, ctx: FileContext, seed: int) -> list:
    """The mutations of `kind` (flips, truncations, headers, members), each (label, bytes
    maker), in a seeded order (flips and truncations are shuffled, so that a run cut short
    by its time budget is a uniform sample)."""
    data = ctx.data
    if kind == "flips":
        bits = list(range(len(data) * 8))
        random.Random(seed).shuffle(bits)
        return [(f"bit {b % 8} of byte {b // 8}", lambda b=b: _flip(data, b)) for b in bits]
    if kind == "truncations":
        lengths = list(range(len(data)))
        random.Random(seed).shuffle(lengths)
        return [(f"the first {n} of {len(data)} bytes", lambda n=n: data[:n])
                for n in lengths]
    if kind == "headers":
        return [(label, lambda m=make: ctx.with_header(m()))
                for label, make in header_edits(ctx.header)]
    if kind == "members":
        return member_edits(ctx)
    raise ValueError(f"unknown mutation kind {kind!r}")


def evaluate_mutation(ctx: FileContext, item, resume: bool) -> dict:
    """Load the mutated file: "rejected" (ValueError naming the file), "unchanged" (loads,
    everything equals the original), "differs" (loads, a valid model that differs: the
    fields in "diff"), or "error" (any other exception, a ValueError not naming the file,
    or a loaded model that cannot compute its outputs). With `resume`, also fit a new model
    with resume_from=the file."""
    label, make = item
    try:
        data = make()
    except Exception as exc:  # an edit that does not apply to this member (complex text)
        return {"label": label, "outcome": "skipped", "type": type(exc).__name__,
                "message": short(exc)}
    with open(ctx.path, "wb") as f:
        f.write(data)
    rec = {"label": label}
    rec.update(_load_outcome(ctx))
    if resume:
        rec.update(_resume_outcome(ctx, rec["outcome"] in ("unchanged", "differs")))
    return rec


def _named(message: str, path: str) -> bool:
    return path in message or os.path.basename(path) in message


def _load_outcome(ctx: FileContext) -> dict:
    try:
        m = MLP.load(ctx.path, backend=BACKEND)
    except ItemTimeout:
        raise
    except ValueError as exc:
        if _named(str(exc), ctx.path):
            return {"outcome": "rejected"}
        return {"outcome": "error", "type": type(exc).__name__,
                "message": "the ValueError does not name the file: " + short(exc)}
    except Exception as exc:
        return {"outcome": "error", "type": type(exc).__name__,
                "message": short(str(exc).replace(ctx.path, "FILE"))}
    try:
        if m.head is not None:
            out = m.backend.to_numpy(m.forward(ctx.X))
            if not np.isfinite(out).all():
                raise FloatingPointError("outputs are not finite")
            m.predict(ctx.X)
    except ItemTimeout:
        raise
    except Exception as exc:
        return {"outcome": "error", "type": type(exc).__name__,
                "message": "loaded, but the model cannot predict: " + short(exc)}
    diff = differences(ctx.original, model_state(m, ident=False))
    return {"outcome": "differs" if diff else "unchanged", "diff": diff}


def _resume_outcome(ctx: FileContext, valid: bool) -> dict:
    """fit(resume_from=the file): "rejected" (ValueError naming the file; for a file that
    loads as a valid model, any ValueError: e.g. its edited classes do not hold the data's
    labels), "resumed", "diverged" (DivergenceError: e.g. an edited learning rate) or
    "error"."""
    model = _file_model(ctx.seed)
    try:
        model.fit(ctx.X, ctx.y, epochs=FILE_EPOCHS + 2, batch_size=16, resume_from=ctx.path)
    except ItemTimeout:
        raise
    except accelnn.DivergenceError:
        return {"resume": "diverged"}
    except ValueError as exc:
        if _named(str(exc), ctx.path) or valid:
            return {"resume": "rejected"}
        return {"resume": "error", "resume_type": type(exc).__name__,
                "resume_message": "the ValueError does not name the file: " + short(exc)}
    except Exception as exc:
        return {"resume": "error", "resume_type": type(exc).__name__,
                "resume_message": short(str(exc).replace(ctx.path, "FILE"))}
    return {"resume": "resumed"}


FILE_TITLES = {"flips": "single-bit flips", "truncations": "truncations",
               "headers": "header edits", "members": "member and zip edits"}


def _group(failures: list[tuple[str, str]], prefix: str, examples: int = 3) -> list[str]:
    """Failures (label, description) grouped by description with digits folded, each with a
    count and a few example labels."""
    groups: dict[str, list] = {}
    for label, what in failures:
        key = re.sub(r"\d+", "N", what)
        groups.setdefault(key, [what, []])[1].append(label)
    out = []
    for what, labels in groups.values():
        shown = "; ".join(labels[:examples]) + ("; ..." if len(labels) > examples else "")
        out.append(f"{prefix}: {what} ({len(labels):,}x, e.g. {shown})")
    return out


def tally_mutations(kind: str, records: list[dict], available: int, planned: int,
                    labels: list[str] | None = None) -> Section:
    """Rows for one kind of mutation (load; and fit(resume_from=) for header and member
    edits) and the failures, grouped."""
    title = FILE_TITLES.get(kind, kind)
    count = {k: 0 for k in ("rejected", "unchanged", "differs")}
    weights_differ = 0
    fails, resume_fails = [], []
    resumes = {k: 0 for k in ("rejected", "resumed", "diverged")}
    n_resume = 0
    skipped = [r for r in records if r.get("outcome") == "skipped"]
    records = [r for r in records if r.get("outcome") != "skipped"]
    n = len(records)
    differ: dict[str, list[str]] = {}
    for rec in records:
        label = rec.get("label") or (labels[rec["i"]] if labels else f"item {rec['i']}")
        outcome = rec.get("outcome")
        if outcome == "differs":
            differ.setdefault(", ".join(rec.get("diff", [])), []).append(label)
        if outcome in count:
            count[outcome] += 1
            weights_differ += outcome == "differs" and "weights" in rec.get("diff", [])
        else:
            what = f"{rec.get('type') or outcome}: {rec.get('message', '')}"
            fails.append((label, what))
        if "resume" in rec:
            n_resume += 1
            if rec["resume"] in resumes:
                resumes[rec["resume"]] += 1
            else:
                resume_fails.append((label, f"{rec.get('resume_type')}: "
                                            f"{rec.get('resume_message')}"))
    tried = n + len(skipped)
    scope = f" ({tried:,} of {available:,})" if tried < available else ""
    if kind == "flips":
        scope = f" ({n:,} of the file's {available:,} bits)"
    elif kind == "truncations":
        scope = f" ({n:,} of {available:,} lengths)"
    other = count["differs"] - weights_differ
    loaded = f"{count['unchanged']:,} loaded unchanged"
    if weights_differ or kind != "flips":
        loaded += f"; {weights_differ:,} loaded, weights differ (valid data)"
    if other:
        loaded += f"; {other:,} loaded, other fields differ (valid data)"
    rows = [Row(f"model file: {title}{scope}", f"{n:,}",
                f"{count['rejected']:,} rejected as ValueError", loaded)]
    if n_resume:
        resumed = f"{resumes['resumed']:,} resumed"
        if resumes["diverged"]:
            resumed += f", {resumes['diverged']:,} resumed then diverged (DivergenceError)"
        rows.append(Row(f"model file: {title}, fit(resume_from=)", f"{n_resume:,}",
                        f"{resumes['rejected']:,} rejected as ValueError", resumed))
    notes = []
    for fields, which in differ.items():
        shown = "; ".join(which[:6]) + ("; ..." if len(which) > 6 else "")
        notes.append(f"{title}: {len(which):,} loaded a model that differs in {fields} "
                     f"(e.g. {shown})")
    if skipped:
        notes.append(f"{title}: {len(skipped)} edits did not apply and were skipped (e.g. "
                     f"{skipped[0].get('label')}: {skipped[0].get('message')})")
    if tried < planned:
        notes.append(f"{title}: {tried:,} of {planned:,} planned were tried within the time "
                     f"budget")
    failures = _group(fails, f"model file, {title}, MLP.load") + \
        _group(resume_fails, f"model file, {title}, fit(resume_from=)")
    return Section(rows, failures, notes)


# ---------------------------------------------------------------------- 3. peak memory
PEAK_LAYERS = [3, 65536, 3]


def member_headers(path: str) -> dict:
    """{member name: (dtype str, shape)} from each .npy member's header; members whose
    header cannot be read are left out."""
    out = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            try:
                with z.open(info) as f:
                    major, _ = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if major == 1 else
                            np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f, max_header_size=1 << 20)
                out[info.filename] = (dtype.str, tuple(shape))
            except Exception:
                continue
    return out


def valid_bytes(path: str, reference: dict) -> int:
    """Bytes of the members of `path` that are valid parts of the model: a member of the
    reference file's name, dtype and shape (what the file legitimately holds)."""
    total = 0
    for name, (dtype, shape) in member_headers(path).items():
        if reference.get(name) == (dtype, shape):
            total += int(np.dtype(dtype).itemsize * math.prod(shape))
    return total


HOSTILE = ("layers7", "layers8", "junk", "w1huge", "extra2g", "header4g")


def prepare_memory(work: str, seed: int, keys=HOSTILE) -> list[tuple[str, str]]:
    """A normal checkpoint of [3, 65536, 3] (float64, Adam: 10.5 MiB of arrays) and the
    hostile variants of it named in `keys` (see HOSTILE); returns [(label, path)], the normal
    file first."""
    d = os.path.join(work, "memory")
    os.makedirs(d, exist_ok=True)
    X, y = _file_data(seed)
    normal = os.path.join(d, "normal.npz")
    m = MLP(PEAK_LAYERS, "tanh", "softmax", seed=seed, dtype="float64", backend=BACKEND)
    m.fit(X, y, epochs=1, optimizer="adam")
    m.save(normal)
    MLP([3, 2, 3], "tanh", "softmax", seed=seed, backend=BACKEND).save(
        os.path.join(d, "tiny.npz"))
    with np.load(normal) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(str(arrays["header"]))
    with open(normal, "rb") as f:
        data = f.read()
    w1 = arrays["W1"]

    def write(name, content):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(content)
        return p

    def layers(power):
        h = {**header, "layer_sizes": [3, 10**power, 3]}
        buf = io.BytesIO()
        np.savez(buf, **{**arrays, "header": np.array(json.dumps(h))})
        return write(f"layers1e{power}.npz", buf.getvalue())

    def junk():
        p = os.path.join(d, "junk.npz")
        shutil.copy(normal, p)
        chunk = bytes(16 * MiB)
        with zipfile.ZipFile(p, "a", zipfile.ZIP_DEFLATED, compresslevel=1) as z, \
                z.open("junk.npy", "w", force_zip64=True) as f:
            f.write(npy_header("<f8", (2 * GiB // 8,)))
            for _ in range(2 * GiB // len(chunk)):
                f.write(chunk)
        return p

    makers = {
        "layers7": ("header declares layer_sizes [3, 10**7, 3]", lambda: layers(7)),
        "layers8": ("header declares layer_sizes [3, 10**8, 3]", lambda: layers(8)),
        "junk": ("an extra member: 2 GiB of zeros, deflated", junk),
        "w1huge": ("W1.npy declares 2**40 float64 (8 TiB)", lambda: write("w1huge.npz", _rezip(
            data, replace={"W1.npy": npy_header("<f8", (2**40,)) + w1.tobytes()}))),
        "extra2g": ("an extra member declares 2 GiB and holds 64 bytes", lambda: write(
            "extra2g.npz", _rezip(data, add=[("big.npy", npy_header("<f8", (2 * GiB // 8,))
                                              + bytes(64))]))),
        "header4g": ("header.npy declares a 4 GiB string", lambda: write(
            "header4g.npz", _rezip(data, replace={
                "header.npy": npy_header("<U1073741824", ()) +
                np.array(json.dumps(header)).tobytes()}))),
    }
    files = [("a normal file (baseline)", normal)]
    for key in keys:
        label, make = makers[key]
        files.append((label, make()))
    return files


def peak_main(a) -> int:
    """A peak-memory child: load a tiny file (imports and first-call allocations), then the
    file a._peak under an address-space limit; print {outcome, growth, ...} as JSON."""
    warnings.simplefilter("ignore")
    MLP.load(os.path.join(os.path.dirname(a._peak), "tiny.npz"), backend=BACKEND)
    limit = limit_memory(PEAK_MEMORY)
    before = reset_peak()
    t0 = time.perf_counter()
    rec = {"limit": limit}
    try:
        MLP.load(a._peak, backend=BACKEND)
        rec["outcome"] = "loaded"
    except ValueError as exc:
        rec.update(outcome="rejected" if _named(str(exc), a._peak) else "error",
                   type="ValueError", message=short(exc))
    except BaseException as exc:
        rec.update(outcome="error", type=type(exc).__name__, message=short(exc))
    rec.update(seconds=time.perf_counter() - t0, growth=peak_rss() - before)
    print(json.dumps(rec), flush=True)
    return 0


def measure_peak(path: str, timeout: float = 300.0) -> dict:
    cmd = [sys.executable, SCRIPT, "--_peak", path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=child_env())
    except subprocess.TimeoutExpired:
        return {"outcome": "error", "type": "timeout", "message": f"no answer in {timeout} s",
                "growth": None}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-2:])
        return {"outcome": "error", "type": f"exit {proc.returncode}",
                "message": short(tail), "growth": None}
    return json.loads(lines[-1])


def tally_memory(results: list[dict]) -> Section:
    """One row: hostile files tried, rejected as ValueError naming the file, loaded, and the
    worst peak growth against the bytes of the file's valid members; the baseline (the
    first result, a normal file) for comparison. Errors are failures."""
    base, hostile = results[0], results[1:]
    failures = []
    worst = None
    for r in results:
        if r.get("growth") is not None and r.get("declared"):
            r["ratio"] = r["growth"] / r["declared"]
            if r is not base and (worst is None or r["ratio"] > worst["ratio"]):
                worst = r
        if r["outcome"] == "error":
            failures.append(f"peak memory, {r['label']}: MLP.load raised {r.get('type')}: "
                            f"{r.get('message')}")
        elif r.get("ratio") is not None and r["ratio"] > 2.5 and r is not base:
            failures.append(f"peak memory, {r['label']}: MLP.load grew by {human(r['growth'])}"
                            f", {r['ratio']:.1f}x the {human(r['declared'])} of the file's "
                            f"valid members ({r['outcome']})")
    rejected = sum(r["outcome"] == "rejected" for r in hostile)
    loaded = sum(r["outcome"] == "loaded" for r in hostile)
    memory = "n/a"
    if worst is not None:
        memory = (f"{worst['ratio']:.1f}x: {human(worst['growth'])} for "
                  f"{human(worst['declared'])} declared ({worst['label']})")
    if base.get("ratio") is not None:
        memory += f"; a normal file: {base['ratio']:.1f}x ({human(base['growth'])})"
    row = Row("hostile files: peak memory of MLP.load", f"{len(hostile)}",
              f"{rejected} rejected as ValueError", f"{loaded} loaded", memory)
    notes = [f"peak memory, {r['label']}: {r['outcome']}"
             + (f" ({r.get('type')})" if r.get("type") else "")
             + (f", grew {human(r['growth'])} ({r['ratio']:.1f}x {human(r['declared'])})"
                if r.get("ratio") is not None else "")
             + (f", {r['seconds']:.1f} s" if r.get("seconds") is not None else "")
             for r in results]
    return Section([row], failures, notes)


# ---------------------------------------------------------------------- 4. kill, Ctrl-C
SIGNAL_EPOCHS = 40


def signal_data(seed: int):
    return _file_data(seed, rows=64)


def signal_model(seed: int):
    return MLP(SIGNAL_LAYERS, "tanh", "softmax", seed=seed, dtype="float64", backend=BACKEND)


def fit_main(a) -> int:
    """A signal-trial child: fit with a checkpoint after every epoch until killed."""
    X, y = signal_data(a.seed)
    model = signal_model(a.seed)
    print("started", flush=True)
    try:
        model.fit(X, y, epochs=a._epochs, batch_size=16, optimizer="adam", lr=0.01,
                  checkpoint=a._fit)
    except KeyboardInterrupt:
        import traceback

        traceback.print_exc()  # where it landed, for the report
        print("KeyboardInterrupt", flush=True)
        return 130
    print("finished", flush=True)
    return 0


def signal_reference(work: str, seed: int, epochs: int) -> tuple[dict, float]:
    """The uninterrupted run's state and how long its epochs take, checkpoints included."""
    folder = os.path.join(work, "signals", "reference")
    os.makedirs(folder, exist_ok=True)
    X, y = signal_data(seed)
    model = signal_model(seed)
    t0 = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=16, optimizer="adam", lr=0.01,
              checkpoint=os.path.join(folder, "ref.npz"))
    return _comparable(model), time.perf_counter() - t0


def _comparable(model) -> dict:
    state = model_state(model, ident=False)
    state.pop("run")  # a resumed model remembers its checkpoint's schedule record
    return state


def _saves_seen(path: str, seen: set) -> int:
    """How many distinct files have been at `path` (each checkpoint is a new file renamed
    into place), counting the one there now."""
    try:
        st = os.stat(path)
        seen.add((st.st_ino, st.st_mtime_ns))
    except OSError:
        pass
    return len(seen)


def signal_trial(work: str, n: int, sig: int, seed: int, epochs: int, after: int,
                 offset: float) -> dict:
    """Start a fit with a checkpoint after every epoch in a child; once its `after`-th
    checkpoint is in place, wait `offset` s (a fraction of an epoch) and send `sig`. Then
    check the checkpoint: it loads, resuming it equals the uninterrupted run exactly, and no
    temporary file is left (after the signal, for SIGINT; after the next save, always)."""
    folder = os.path.join(work, "signals", f"{signal.Signals(sig).name}-{n}")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "run.npz")
    proc = subprocess.Popen([sys.executable, SCRIPT, "--_fit", path, "--_epochs", str(epochs),
                             "--seed", str(seed)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    rec = {"signal": signal.Signals(sig).name, "trial": n, "after": after, "offset": offset}
    seen: set = set()
    t0 = time.monotonic()
    while _saves_seen(path, seen) < after and proc.poll() is None and \
            time.monotonic() - t0 < 120:
        time.sleep(0.0005)
    time.sleep(offset)
    rec["finished_first"] = proc.poll() is not None
    if not rec["finished_first"]:
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    rec["rc"] = proc.returncode
    # fit had returned when the signal came (the child was printing or exiting)
    rec["finished_first"] = rec["finished_first"] or "finished" in out
    main_err = err.split("Exception ignored in")[0]  # not the noise of finalizers
    last = [ln for ln in main_err.splitlines() if ln.strip()][-1:]
    # the child's handler printed it, or it is the exception the child died of (a
    # KeyboardInterrupt that another exception replaced in a cleanup does not count)
    rec["interrupted"] = "KeyboardInterrupt" in out.split() or last == ["KeyboardInterrupt"]
    rec["child_error"] = short(last[0]) if last and not rec["interrupted"] and \
        proc.returncode not in (0, -signal.SIGKILL) else ""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', err)
    rec["landed"] = (f"{os.path.basename(frames[-1][0])}:{frames[-1][1]} in {frames[-1][2]}"
                     if frames else "")
    rec["tmp_after_signal"] = temporaries(folder)
    if rec["tmp_after_signal"] or (sig == signal.SIGINT and not rec["interrupted"]):
        rec["stderr"] = err[-3000:]
    try:
        loaded = MLP.load(path, backend=BACKEND)
    except Exception as exc:
        rec["load_error"] = f"{type(exc).__name__}: {short(exc)}"
        return rec
    rec["epoch"] = loaded.epoch_
    X, y = signal_data(seed)
    if loaded.epoch_ >= epochs:
        final = loaded
    else:
        final = signal_model(seed)
        try:
            final.fit(X, y, epochs=epochs, batch_size=16, resume_from=path, checkpoint=path)
        except Exception as exc:
            rec["resume_error"] = f"{type(exc).__name__}: {short(exc)}"
            return rec
    rec["state"] = final  # replaced by the comparison in run_signals
    rec["tmp_after_resume"] = temporaries(folder)
    return rec


def judge_trial(rec: dict, reference: dict | None) -> tuple[bool, bool, list[str]]:
    """(resumable, equal to the uninterrupted run, problems) for one trial record."""
    problems = []
    if rec.get("load_error"):
        problems.append(f"the checkpoint does not load: {rec['load_error']}")
    if rec.get("resume_error"):
        problems.append(f"resuming failed: {rec['resume_error']}")
    state = rec.pop("state", None)
    if state is not None and reference is not None:
        diff = differences(reference, _comparable(state))
        rec["diff"] = diff
    equal = "diff" in rec and not rec["diff"]
    if "diff" in rec and rec["diff"]:
        problems.append("the resumed run differs from the uninterrupted run in "
                        + ", ".join(rec["diff"]))
    if rec.get("tmp_after_resume"):
        problems.append(f"temporary files left after the next save: {rec['tmp_after_resume']}")
    if rec["signal"] == "SIGINT" and not rec.get("finished_first"):
        if not rec.get("interrupted"):
            problems.append(f"the child did not end with KeyboardInterrupt (exit status "
                            f"{rec.get('rc')}; {rec.get('child_error') or 'no message'})")
        if rec.get("tmp_after_signal"):
            problems.append(f"temporary files left by the interrupt: "
                            f"{rec['tmp_after_signal']}"
                            + (f" (it landed in {rec['landed']})" if rec.get("landed") else ""))
    if rec["signal"] == "SIGKILL" and rec.get("child_error"):
        problems.append(f"the child failed before the kill: {rec['child_error']}")
    resumable = not [p for p in problems if not p.startswith("the resumed run differs")]
    return resumable, equal, problems


def tally_signals(records: list[dict]) -> Section:
    rows, failures, notes = [], [], []
    titles = {"SIGKILL": "kill (SIGKILL) during fit(checkpoint=)",
              "SIGINT": "Ctrl-C (SIGINT) during fit(checkpoint=)"}
    for name in ("SIGKILL", "SIGINT"):
        recs = [r for r in records if r["signal"] == name]
        if not recs:
            continue
        resumable = sum(r["resumable"] for r in recs)
        equal = sum(r["equal"] for r in recs)
        early = sum(bool(r.get("finished_first")) for r in recs)
        ok = f"{resumable} resumable"
        if name == "SIGINT":
            ok += " (KeyboardInterrupt, no temporary file)"
        rows.append(Row(titles[name], f"{len(recs)}", ok,
                        f"{equal} equal to the uninterrupted run"))
        if name == "SIGKILL":
            mid_save = sum(bool(r.get("tmp_after_signal")) for r in recs)
            notes.append(f"SIGKILL: {mid_save} of {len(recs)} kills landed while a checkpoint "
                         f"was being written (a temporary file was left, and the next save "
                         f"removed it)")
        epochs = sorted(r["epoch"] for r in recs if "epoch" in r)
        if epochs:
            notes.append(f"{name}: checkpoints found at epochs {epochs[0]}..{epochs[-1]} "
                         f"(median {epochs[len(epochs) // 2]}) of {SIGNAL_EPOCHS}"
                         + (f"; in {early} trials fit had returned before the signal came"
                            if early else ""))
        for r in recs:
            if r["problems"]:
                failures.append(f"{name} trial {r['trial']} ({r['offset'] * 1e3:.1f} ms after "
                                f"checkpoint {r['after']}; found epoch "
                                f"{r.get('epoch', '?')}): " + "; ".join(r["problems"]))
    return Section(rows, failures, notes)


# ---------------------------------------------------------------------- the audit
def audit_inputs(work: str, seed: int, count: int | None = None) -> Section:
    prepare_inputs(work, seed)
    cases = input_cases()
    n = len(cases) if count is None else min(count, len(cases))
    records = run_items("inputs", n, work, item_timeout=30.0, extra=("--seed", str(seed)))
    return tally_inputs(records, cases)


def audit_files(work: str, seed: int, flips: int | None = None, flip_seconds: float = 60.0,
                truncations: int | None = None, truncation_seconds: float = 30.0,
                headers: int | None = None, members: int | None = None) -> Section:
    """Mutations of a real checkpoint. flips/truncations: how many (None: all, within
    flip_seconds/truncation_seconds); headers/members: how many edits (None: all)."""
    prepare_files(work, seed)
    ctx = FileContext(work)
    section = Section([])
    for kind, limit, seconds in (("headers", headers, None), ("members", members, None),
                                 ("truncations", truncations, truncation_seconds),
                                 ("flips", flips, flip_seconds)):
        plan = mutation_plan(kind, ctx, seed)
        available = len(plan)
        labels = [label for label, _ in plan]
        planned = available if limit is None else min(limit, available)
        deadline = time.time() + seconds if seconds is not None and limit is None else None
        t0 = time.perf_counter()
        records = run_items(kind, planned, work, item_timeout=20.0, deadline=deadline,
                            extra=("--seed", str(seed)))
        note(f"  model file, {FILE_TITLES[kind]}: {len(records):,} in "
             f"{time.perf_counter() - t0:.0f} s")
        part = tally_mutations(kind, records, available, planned, labels)
        section.rows += part.rows
        section.failures += part.failures
        section.notes += part.notes
    section.notes.append(f"the checkpoint: {FILE_LAYERS} tanh/softmax, float64, Adam, "
                         f"classes ['a', 'b', 'c'], {len(ctx.data):,} bytes "
                         f"({len(ctx.data) * 8:,} bits)")
    return section


def audit_memory(work: str, seed: int, keys=HOSTILE) -> Section:
    """Peak memory of MLP.load on a normal file and the hostile files `keys` (HOSTILE)."""
    files = prepare_memory(work, seed, keys)
    reference = member_headers(files[0][1])
    results = []
    for label, path in files:
        r = measure_peak(path)
        r.update(label=label, declared=valid_bytes(path, reference))
        results.append(r)
        note(f"  peak memory, {label}: {r['outcome']}"
             + (f", +{human(r['growth'])}" if r.get("growth") is not None else ""))
    return tally_memory(results)


def audit_signals(work: str, seed: int, kills: int = 20, interrupts: int = 20) -> Section:
    reference, duration = signal_reference(work, seed, SIGNAL_EPOCHS)
    rng = random.Random(seed)
    records = []
    for sig, n in ((signal.SIGKILL, kills), (signal.SIGINT, interrupts)):
        for t in range(n):
            after = rng.randint(1, SIGNAL_EPOCHS - 2)
            offset = rng.uniform(0.0, duration / SIGNAL_EPOCHS)
            rec = signal_trial(work, t, sig, seed, SIGNAL_EPOCHS, after, offset)
            rec["resumable"], rec["equal"], rec["problems"] = judge_trial(rec, reference)
            records.append(rec)
    section = tally_signals(records)
    section.notes.append(f"signal trials: {SIGNAL_LAYERS} tanh/softmax, float64, Adam, 64 "
                         f"rows, batch 16, {SIGNAL_EPOCHS} epochs with a checkpoint after each"
                         f" ({duration:.2f} s uninterrupted); each signal after a random "
                         f"checkpoint (1 to {SIGNAL_EPOCHS - 2}) plus a random part of an "
                         f"epoch's time")
    return section


def render(sections: list[Section], title: str) -> str:
    lines = [title, "",
             "| category | tried | rejected with a clear error / resumable | state unchanged / "
             "loaded unchanged | worst peak memory vs declared |",
             "|---|---:|---|---|---|"]
    for s in sections:
        for r in s.rows:
            lines.append(f"| {r.category} | {r.tried} | {r.ok} | {r.unchanged} | "
                         f"{r.memory or '–'} |")
    failures = [f for s in sections for f in s.failures]
    notes = [n for s in sections for n in s.notes]
    lines += ["", f"Failures ({len(failures)}):" if failures else "Failures: none."]
    lines += [f"- {f}" for f in failures]
    if notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", os.path.dirname(SCRIPT), "rev-parse", "--short",
                              "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", os.path.dirname(SCRIPT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10)
        if out.returncode == 0:
            return out.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown commit"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="fewer flips, truncations and signal trials (about a minute)")
    p.add_argument("--seed", type=int, default=0, help="seeds the data, models and samples")
    p.add_argument("--markdown", metavar="PATH", help="also write the report here")
    p.add_argument("--strict", action="store_true", help="exit 1 when anything failed")
    p.add_argument("--categories", default="inputs,files,memory,signals",
                   help="which categories to run (default: all four)")
    p.add_argument("--flip-seconds", type=float, default=60.0,
                   help="time budget for the bit flips of a default run (default: 60)")
    p.add_argument("--trials", type=int, default=None,
                   help="kill and Ctrl-C trials each (default: 20; --quick: 3)")
    p.add_argument("--work", help="working folder (default: a temporary one, removed after)")
    for name, kind in (("--_worker", str), ("--_work", str), ("--_start", int),
                       ("--_stop", int), ("--_out", str), ("--_timeout", float),
                       ("--_deadline", float), ("--_peak", str), ("--_fit", str),
                       ("--_epochs", int)):
        p.add_argument(name, type=kind, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    if a._worker:
        return worker_main(a)
    if a._peak:
        return peak_main(a)
    if a._fit:
        return fit_main(a)
    categories = [c.strip() for c in a.categories.split(",") if c.strip()]
    unknown = set(categories) - {"inputs", "files", "memory", "signals"}
    if unknown:
        print(f"audit.py: error: unknown categories {sorted(unknown)}", file=sys.stderr)
        return 2
    work = a.work or tempfile.mkdtemp(prefix="accelnn-audit-")
    os.makedirs(work, exist_ok=True)
    work = os.path.abspath(work)
    trials = a.trials if a.trials is not None else (3 if a.quick else 20)
    t_start = time.perf_counter()
    sections = []
    try:
        for cat in categories:
            t0 = time.perf_counter()
            note(f"audit: {cat} ...")
            if cat == "inputs":
                sections.append(audit_inputs(work, a.seed))
            elif cat == "files":
                if a.quick:
                    sections.append(audit_files(work, a.seed, flips=3000, truncations=300))
                else:
                    sections.append(audit_files(work, a.seed, flip_seconds=a.flip_seconds))
            elif cat == "memory":
                sections.append(audit_memory(work, a.seed))
            elif cat == "signals":
                sections.append(audit_signals(work, a.seed, trials, trials))
            note(f"audit: {cat} done in {time.perf_counter() - t0:.0f} s")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - t_start
    title = (f"accelnn robustness audit: accelnn {accelnn.__version__} (commit "
             f"{_git_commit()}), numpy {np.__version__}, {BACKEND} backend, seed {a.seed}, "
             f"{'--quick' if a.quick else 'default'} run, {seconds:.0f} s")
    report = render(sections, title)
    print(report)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(report)
    failed = any(s.failures for s in sections)
    return 1 if a.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
