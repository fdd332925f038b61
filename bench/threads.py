"""Two training processes on one machine: torch's default intra-op threads against threads split.

Each process times ShuffleNetV2 matcher-sized steps (batch 16, 48 px, 10 bands: forward, backward,
Adam) on the CPU. Runs: one process alone with torch's default threads (one per core), two at
once with the default, and two at once with `ackd_bench.threads.threads_for(2)` each.

    python bench/threads.py [--steps 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time


def steps_ms(threads: int | None, steps: int, queue) -> None:
    import torch
    import torch.nn.functional as F

    from ackd_bench.models import build_backbone

    if threads:
        torch.set_num_threads(threads)
    model = build_backbone("S", 10, 6)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, targets = torch.randn(16, 10, 48, 48), torch.randint(0, 6, (16,))
    timings = []
    for step in range(steps + 3):
        started = time.perf_counter()
        loss = F.cross_entropy(model(images)["logits"], targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= 3:
            timings.append(1e3 * (time.perf_counter() - started))
    queue.put((torch.get_num_threads(), statistics.median(timings)))


def run(processes: int, threads: int | None, steps: int) -> list[tuple[int, float]]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=steps_ms, args=(threads, steps, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return results


def main() -> None:
    from ackd_bench.threads import threads_for, usable_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(f"{usable_cores()} usable cores; ShuffleNetV2 step, batch 16, 48 px, 10 bands (median ms per process)")
    print(f"{'processes':>10}{'threads each':>14}{'step ms':>20}")
    for processes, threads in ((1, None), (2, None), (2, threads_for(2))):
        results = run(processes, threads, args.steps)
        label = f"{results[0][0]} ({'default' if threads is None else 'split'})"
        print(f"{processes:>10}{label:>14}{' / '.join(f'{ms:.0f}' for _, ms in results):>20}")


if __name__ == "__main__":
    main()
