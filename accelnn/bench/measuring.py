"""Measuring one subject: the timing of a phase (median and quartiles of synchronized samples,
blocks contaminated by foreign load dropped and re-measured) and its agreement with a float64
NumPy reference (rel_err, the error measure the tests use too)."""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from .configs import AGREEMENT_STEPS, Config, Inputs
from .load import BUSY, Block, LoadMonitor
from .subjects import ModelSubject

# ---------------------------------------------------------------------- timing
BLOCK_S = 0.2       # a timing block: the samples between two readings of the CPU counters
SLOW_BLOCK = 1.25   # a block whose median is this much above the fastest block's is dropped
SPREAD_LIMIT = 0.2  # kept samples whose IQR is above this fraction of their median: noisy
SAMPLES_PER_MIN_TIME = 200  # a sample lasts at least min_time / this (2.5 ms at 0.5 s)
MAX_ATTEMPTS = 3    # measuring rounds of a row, while its timing is noisy


class Timing(NamedTuple):
    """One measured phase. median_s, q1_s, q3_s: seconds per call over the kept samples;
    calls: every call timed; samples: samples taken, kept: samples kept (those of clean blocks);
    blocks, dropped: timing blocks taken and dropped (foreign load or slow); attempts: measuring
    rounds (above 1: re-measured); foreign_cpu_s: CPU-seconds other processes used during the
    blocks (None without a load monitor); noisy: None, "machine busy" or "timings spread"."""

    median_s: float
    q1_s: float
    q3_s: float
    calls: int
    samples: int
    kept: int
    blocks: int
    dropped: int
    attempts: int
    foreign_cpu_s: float | None
    noisy: str | None


def time_once(fn, sync) -> float:
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def measure(fn, sync, min_time: float, min_samples: int, monitor: LoadMonitor | None = None,
            attempts: int = MAX_ATTEMPTS) -> Timing:
    """Time a warmed-up `fn` in samples of `number` calls each (number chosen so that a sample
    lasts at least min_time / SAMPLES_PER_MIN_TIME), synchronized before each clock read, grouped
    into blocks of about BLOCK_S (at most min_time / 2) with the load `monitor` read around each
    block.

    A round takes blocks until min_time has passed and min_samples are taken. Dropped: blocks
    the monitor finds contaminated by foreign load, and blocks whose median is more than
    SLOW_BLOCK times the fastest block's. The row is noisy while fewer than min_samples samples,
    or less than min_time / 2 of them, are kept, or their IQR exceeds SPREAD_LIMIT of their
    median; then it is measured again, up to `attempts` rounds, pooling the blocks, unless the
    monitor has seen nothing but contaminated blocks for a while (`persistent`). A row that
    stays noisy is timed over its kept samples or, when no block is clean, over its fastest
    samples (within SLOW_BLOCK of the fastest one): foreign load only ever adds time, and a
    sample of a few ms often slips between two preemptions that a 0.2 s block cannot (on a
    2-core machine under 2 CPUs of foreign load, a 0.6 ms step measured 16 ms as a median of
    2.5 ms samples, 0.75 ms as their fastest, 1.3 ms as the fastest of 25 ms samples)."""
    return measure_many([(fn, sync, None)], min_time, min_samples, monitor, attempts)[0]


def measure_many(entries, min_time: float, min_samples: int,
                 monitor: LoadMonitor | None = None,
                 attempts: int = MAX_ATTEMPTS) -> list[Timing]:
    """`measure` for contenders timed together: entries are (fn, sync, before) with `before`
    None or called ahead of each of fn's blocks. Their blocks are interleaved, one block of each
    in turn (the order rotated from turn to turn), so that a change of the machine's speed that
    lasts seconds (a neighbour's load, a slow phase of the host) falls on all of them alike
    instead of on whichever was being timed: comparisons between them stay fair. Each gets its
    own blocks, rounds and verdict exactly as `measure` gives them; a round goes on until every
    contender has min_time and min_samples, and only the noisy ones are measured again.
    Returns one Timing per entry, in order."""
    numbers = []
    for fn, sync, before in entries:
        if before is not None:
            before()
        one = time_once(fn, sync)
        numbers.append(max(1, math.ceil(min_time / SAMPLES_PER_MIN_TIME / max(one, 1e-9))))
    block_s = min(BLOCK_S, min_time / 2)
    blocks: list[list[tuple[Block | None, list[float]]]] = [[] for _ in entries]
    rounds = [0] * len(entries)
    verdicts: list = [None] * len(entries)
    todo = list(range(len(entries)))
    turn = 0
    while todo:
        for i in todo:
            rounds[i] += 1
        taken, spent = dict.fromkeys(todo, 0), dict.fromkeys(todo, 0.0)
        while any(taken[i] < min_samples or spent[i] < min_time for i in todo):
            order = todo[turn % len(todo):] + todo[:turn % len(todo)]
            turn += 1
            for i in order:
                if taken[i] >= min_samples and spent[i] >= min_time:
                    continue
                fn, sync, before = entries[i]
                if before is not None:
                    before()
                b0, samples = monitor.read() if monitor else None, []
                t_block = time.perf_counter()
                while not samples or time.perf_counter() - t_block < block_s:
                    t0 = time.perf_counter()
                    for _ in range(numbers[i]):
                        fn()
                    sync()
                    samples.append((time.perf_counter() - t0) / numbers[i])
                spent[i] += time.perf_counter() - t_block
                blocks[i].append((monitor.block(b0, monitor.read()) if monitor else None,
                                  samples))
                taken[i] += len(samples)
        for i in todo:
            verdicts[i] = _keep(blocks[i], numbers[i], min_time, min_samples)
        persistent = monitor is not None and monitor.persistent()
        todo = [i for i in todo if verdicts[i][3] is not None and rounds[i] < attempts
                and not persistent]
    timings = []
    for i in range(len(entries)):
        values, kept, dropped, noisy = verdicts[i]
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        taken_all = sum(len(s) for _, s in blocks[i])
        foreign = [b.foreign_cpu_s for b, _ in blocks[i] if b is not None]
        timings.append(Timing(float(med), float(q1), float(q3), numbers[i] * taken_all,
                              taken_all, kept, len(blocks[i]), dropped, rounds[i],
                              sum(foreign) if foreign and None not in foreign else None,
                              noisy))
    return timings


def _keep(blocks, number: int, min_time: float, min_samples: int):
    """(the samples to time the row by, how many samples are kept clean, how many blocks are
    dropped, None or why the row is noisy)."""
    medians = [float(np.median(s)) for _, s in blocks]
    fast = [m <= SLOW_BLOCK * min(medians) for m in medians]
    ok = [f and not (b and b.contaminated) for (b, _), f in zip(blocks, fast)]
    clean = [x for (_, s), o in zip(blocks, ok) if o for x in s]
    fastest = min(x for _, s in blocks for x in s)
    values = clean or [x for _, s in blocks for x in s if x <= SLOW_BLOCK * fastest]
    noisy = None
    if len(clean) < min_samples or sum(clean) * number < min_time / 2:
        busy = any(b and b.contaminated for b, _ in blocks)
        noisy = BUSY if busy else "timings spread"
    else:
        q1, med, q3 = np.percentile(clean, [25, 50, 75])
        if q3 - q1 > SPREAD_LIMIT * med:
            noisy = "timings spread"
    return values, len(clean), ok.count(False), noisy


# ---------------------------------------------------------------------- agreement
def rel_err(a, b) -> float:
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


def _pairs_err(got, ref) -> float:
    return max(rel_err(x, r) for pg, pr in zip(got, ref) for x, r in zip(pg, pr))


def _flat(pairs) -> np.ndarray:
    return np.concatenate([np.ravel(a) for pair in pairs for a in pair])


def reference(config: Config, inputs: Inputs, phases) -> dict:
    """What `agreement` compares with, computed by the NumPy backend in float64: the forward
    output (predict); the loss, gradients and weights after AGREEMENT_STEPS steps (train_step)."""
    ref, out = ModelSubject("numpy", config, "float64", inputs), {}
    if "predict" in phases:
        out["forward"] = ref.forward()
    if set(phases) - {"predict"}:
        out["loss"], out["grads"] = ref.loss_and_grads()
        out["weights"] = ref.train(AGREEMENT_STEPS)
    return out


def agreement(subject, ref: dict, phase: str) -> dict:
    """Max relative error of each quantity of `phase` against the float64 reference: of each
    array for the forward output, the loss and every gradient; of all the weights together
    (their largest difference over the largest weight) after the training steps, since the
    biases start at 0; None for the weights when the subject's `train` says its steps are not
    comparable (returns None)."""
    if phase == "predict":
        return {"forward": rel_err(subject.forward(), ref["forward"])}
    loss, grads = subject.loss_and_grads()
    weights = subject.train(AGREEMENT_STEPS)
    return {"loss": rel_err(loss, ref["loss"]), "grads": _pairs_err(grads, ref["grads"]),
            f"weights_after_{AGREEMENT_STEPS}_steps":
                None if weights is None else rel_err(_flat(weights), _flat(ref["weights"]))}

