"""Stops on Slurm's signals without losing work: SIGUSR2 saves and stops after the epoch in progress
when the grace period allows, at once (keeping the last completed epoch) when it does not; loader
workers outlive the signals their process handles. The cluster itself: tests/test_slurm.py."""

import csv
import os
import signal

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from ackd_bench.train.engine import GRACE_ENV, Preempted, ignore_handled_signals
from tests.test_device_path import TinyTask, _assert_same_as_straight, _engine, _epoch_of


def _logged_epochs(run_dir):
    with open(run_dir / "log.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_sigusr2_finishes_the_epoch_saves_stops_and_resumes_bit_exact(tmp_path):
    task = TinyTask(signal_at=(1, 1))
    task.signal_number = signal.SIGUSR2
    run_dir = tmp_path / "run"
    with pytest.raises(Preempted, match=r"^stopped by SIGUSR2 after epoch 2/4; .*continue with --resume$") as caught:
        _engine(task, run_dir, every=3600, epochs=4).fit()
    assert caught.value.signal_name == "SIGUSR2"
    assert _epoch_of(run_dir / "checkpoints" / "last.pt") == 1 and _logged_epochs(run_dir) == [0, 1]
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    resumed = TinyTask()
    assert _engine(resumed, run_dir, every=3600, epochs=4).fit(resume=True).epochs_run == 2
    assert _logged_epochs(run_dir) == [0, 1, 2, 3]
    _assert_same_as_straight(tmp_path, run_dir)


def test_sigusr2_without_time_to_finish_the_epoch_saves_the_last_completed_one_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv(GRACE_ENV, "0")  # no grace: the epoch in progress cannot end in time
    task = TinyTask(steps=6, signal_at=(2, 1))
    task.signal_number = signal.SIGUSR2
    run_dir = tmp_path / "run"
    with pytest.raises(Preempted, match=r"^stopped by SIGUSR2 during epoch 3/4, too late to finish it within the "
                                        r"grace period; .*last.pt holds epoch 2: continue with --resume$"):
        _engine(task, run_dir, every=3600, epochs=4).fit()
    assert task.prepared[-1] == (2, 1)  # stopped at the next step, not at the epoch's end
    # an hour between saves: last.pt is the copy of epoch 2 (index 1) kept for this, the log agrees
    assert _epoch_of(run_dir / "checkpoints" / "last.pt") == 1 and _logged_epochs(run_dir) == [0, 1]
    monkeypatch.delenv(GRACE_ENV)
    resumed = TinyTask(steps=6)
    assert _engine(resumed, run_dir, every=3600, epochs=4).fit(resume=True).epochs_run == 2
    straight = TinyTask(steps=6)
    _engine(straight, tmp_path / "straight", epochs=4).fit()
    final = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)["module"]
    expected = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["module"]
    assert all(torch.equal(expected[k], final[k]) for k in expected)


class SelfSignalling(Dataset):
    """Each item sends its worker the signals a Slurm job's processes all receive."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        for name in ("SIGTERM", "SIGUSR1", "SIGUSR2"):
            os.kill(os.getpid(), getattr(signal, name))
        return index


def test_loader_workers_ignore_the_signals_their_process_handles():
    loader = DataLoader(SelfSignalling(), batch_size=2, num_workers=1, worker_init_fn=ignore_handled_signals)
    assert [batch.tolist() for batch in loader] == [[0, 1], [2, 3]]


def test_a_stop_that_arrives_while_an_epoch_ends_is_acted_on_at_the_next_not_lost(tmp_path, monkeypatch):
    from ackd_bench.train import engine as engine_module

    copy_of_epoch = engine_module.snapshot
    sent = []

    def copy_then_signal(payload):  # the signal lands after the epoch's stop check, while its state is kept
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))
        return copy_of_epoch(payload)

    monkeypatch.setattr(engine_module, "snapshot", copy_then_signal)
    with pytest.raises(Preempted, match=r"^stopped by SIGTERM after epoch 2/4;"):
        _engine(TinyTask(), tmp_path / "run", every=3600, epochs=4).fit()
    assert _epoch_of(tmp_path / "run" / "checkpoints" / "last.pt") == 1


def test_a_requeued_run_logs_past_its_checkpoint_so_its_stop_is_read_when_its_process_ends(tmp_path):
    """#35: the Slurm test once read a requeued job's run as log 0-3, checkpoint 1, which looks like
    lost work. It was a late read: the stop leaves the log and last.pt agreeing; a requeued instance
    that resumed logs each epoch it trains while last.pt waits for its next save (an hour here, the
    sweep's --checkpoint-every 600 s there). tests/test_slurm.py reads a job's runs as soon as its
    process ends (StoppedStates), before a requeue can restart it, no longer once both jobs ended."""
    from tests.test_slurm import StoppedStates

    run_dir, ended = tmp_path / "run", set()
    last = run_dir / "checkpoints" / "last.pt"
    stopped = StoppedStates(alive=lambda pid: pid not in ended)
    stopped.watch(1, [run_dir])
    task = TinyTask(signal_at=(1, 1))
    task.signal_number = signal.SIGTERM  # `scontrol requeue`
    with pytest.raises(Preempted, match=r"^stopped by SIGTERM after epoch 2/5;"):
        _engine(task, run_dir, every=3600, epochs=5).fit()
    assert not stopped.poll()  # the process has not ended yet: nothing read
    ended.add(1)
    assert stopped.poll() and stopped.states == {run_dir: (1, [0, 1])}  # the stop: log and checkpoint agree

    late = []  # read while the requeued instance runs, as the test did once the other job had ended too
    resumed = TinyTask(on_epoch=lambda epoch: late.append((_epoch_of(last), _logged_epochs(run_dir))))
    assert _engine(resumed, run_dir, every=3600, epochs=5).fit(resume=True).epochs_run == 3
    assert late == [(1, [0, 1]), (1, [0, 1, 2]), (1, [0, 1, 2, 3])]  # the last: #35's reading, nothing lost
    assert stopped.states == {run_dir: (1, [0, 1])}  # read once, at the end of the stopped process
    assert (_epoch_of(last), _logged_epochs(run_dir)) == (4, [0, 1, 2, 3, 4])
