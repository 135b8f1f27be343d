"""The `accelnn` command: `info`, `demo`, `bench`, `bench-many`, `train`, `predict`."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _info(args) -> int:
    import accelnn
    from accelnn._data import resolve_dtype
    from accelnn.backends import BackendError, auto_choice
    from accelnn.machine import blas_summary, machine_info

    m = machine_info()
    print(f"accelnn {accelnn.__version__}  Python {m['python']}  numpy {m['numpy']}")
    print(f"CPU: {m['cpu']} ({m['cores']} cores)")
    print(f"BLAS: {blas_summary()}")
    for key, value in m["env"].items():
        print(f"env: {key}={value}")
    status = 0
    try:
        print(f"default dtype: {resolve_dtype().name}")
    except ValueError as exc:
        print(f"default dtype: error: {exc}")
        status = 1
    print("backends:")
    for st in accelnn.available_backends().values():
        line = f"  {st.name:<6} {'available' if st.available else 'unavailable: ' + st.reason}"
        if st.available:
            details = accelnn.get_backend(st.name).info()
            line += "  " + ", ".join(f"{k}={v}" for k, v in details.items())
        print(line)
    print(f"auto: {auto_choice()[1]}")
    try:
        print(f"selected: {accelnn.get_backend().name}")
    except BackendError as exc:
        print(f"selected: error: {exc}")
        status = 1
    return status


def _demo(args) -> int:
    import numpy as np

    import accelnn

    X, y = accelnn.datasets.make_flower(400, seed=args.seed)
    model = accelnn.MLP([2, args.hidden, 1], "tanh", "sigmoid", seed=args.seed,
                        dtype=args.dtype, backend=args.backend)
    print(f"{model}: flower data, 400 points, full-batch gradient descent, lr {args.lr}")
    chunk = max(1, args.epochs // 5)
    done, total = 0, 0.0
    while done < args.epochs:
        n = min(chunk, args.epochs - done)
        t0 = time.perf_counter()
        hist = model.fit(X, y, epochs=n, lr=args.lr)
        dt = time.perf_counter() - t0
        done, total = done + n, total + dt
        acc = float(np.mean(model.backend.to_numpy(model.predict(X)) == y))
        print(f"  epoch {done:>6}  loss {hist['loss'][-1]:.4f}  train accuracy {acc:.1%}  "
              f"({dt / n * 1e6:.1f} us per step)")
    print(f"{args.epochs} steps in {total:.2f} s (the first block includes the backend's "
          f"start-up, e.g. loading or compiling numba kernels)")
    return 0


def _bench(args) -> int:
    from accelnn.bench import main
    from accelnn.cli_shared import check_outputs

    # a report that cannot be written is found before the minutes of measuring, not after
    check_outputs({"--json": args.json, "--markdown": args.markdown, "--plot": args.plot},
                   {"--compare": args.compare})
    return main(args)


def _bench_many(args) -> int:
    from accelnn.bench.many import main

    return main(args)


def build_parser() -> argparse.ArgumentParser:
    from accelnn._version import __version__
    from accelnn.bench import add_arguments
    from accelnn.bench.many import add_arguments as add_many_arguments
    from accelnn.predict_cli import add_predict_parser
    from accelnn.train_cli import add_train_parser

    parser = argparse.ArgumentParser(prog="accelnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"accelnn {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="backends available here, and why not; machine and BLAS",
                   description="Print accelnn's version, the machine (CPU, cores, BLAS, the "
                               "ACCELNN_* variables), the default dtype, each backend and "
                               "whether it can run here (and why not), and the backend "
                               "auto picks. Exit status 1 when ACCELNN_DTYPE is unusable "
                               "or the selected backend cannot run here.")
    demo = sub.add_parser("demo", help="train the classic [2, 4, 1] tanh/sigmoid network on "
                                       "the planar flower data",
                          description="Train a [2, HIDDEN, 1] tanh/sigmoid network with "
                                      "full-batch gradient descent on 400 points of the "
                                      "planar flower data, printing the loss, the training "
                                      "accuracy and the time per step five times.")
    demo.add_argument("--backend", default=None,
                      help="numpy, numba, cupy or auto (default: ACCELNN_BACKEND, else "
                           "auto: the fastest available)")
    demo.add_argument("--dtype", default=None,
                      help="float32 or float64 (default: ACCELNN_DTYPE, else float32)")
    demo.add_argument("--epochs", type=int, default=10000,
                      help="gradient descent steps (default: %(default)s)")
    demo.add_argument("--lr", type=float, default=1.2,
                      help="learning rate (default: %(default)s)")
    demo.add_argument("--hidden", type=int, default=4,
                      help="hidden units (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=1,
                      help="seeds the data and the weights (default: %(default)s)")
    add_arguments(sub.add_parser("bench", help="throughput and numerical agreement of every "
                                               "backend (and PyTorch/JAX peers), side by side"))
    add_many_arguments(sub.add_parser("bench-many", help="many_models: K tabular networks in "
                                                         "one pass against K sequential fits"))
    add_train_parser(sub)
    add_predict_parser(sub)
    return parser


def main(argv=None) -> int:
    from accelnn.backends import BackendError
    from accelnn.predict_cli import run_predict
    from accelnn.train_cli import run_train

    args = build_parser().parse_args(argv)
    handler = {"info": _info, "demo": _demo, "bench": _bench, "bench-many": _bench_many,
               "train": run_train, "predict": run_predict}[args.command]
    try:
        return handler(args)
    except BrokenPipeError:
        # The reader of standard output went away (`accelnn predict ... | head`): stop
        # quietly, as Unix tools do; stdout goes to devnull so that its flush at exit
        # cannot raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it
    except (BackendError, ValueError, TypeError, ImportError, OSError, RuntimeError,
            FloatingPointError) as exc:
        print(f"accelnn {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
