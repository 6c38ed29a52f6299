"""rlxf.infra.memory: a phase's peak in this process, and the environment of `peak_memory`'s fresh process."""

import pytest

from rlxf.infra.memory import PhasePeak, hold, memory_measure, peak_memory, process_peak_bytes


def test_phase_peak_sees_only_its_block_and_keeps_the_process_peak():
    hold(400)  # a peak before the phase, larger than the one inside it
    before = process_peak_bytes(cuda=False)
    with PhasePeak(cuda=False) as phase:
        hold(100)
    assert phase.measure == memory_measure(False)
    assert process_peak_bytes(cuda=False) >= before  # the reset did not lower the process's peak
    if not phase.reset:
        pytest.skip(f"{phase.measure} cannot be reset here: the phase's peak includes what came before")
    assert 90 * 2**20 < phase.peak_bytes - phase.start_bytes < 200 * 2**20
    assert phase.peak_bytes < before


def test_peak_memory_passes_env_to_the_fresh_process():
    measured = peak_memory("os:getenv", {"key": "RLXF_MEMORY_TEST"}, env={"RLXF_MEMORY_TEST": "seen"})
    assert measured["result"] == "seen" and measured["peak_bytes"] >= measured["baseline_bytes"] > 0
