"""The inference step loop (in place, packed input GEMM) and the side-by-side directions give the
same vectors as the autograd path and as running one direction after the other."""

import threading
import time

import pytest
import torch

from elmo_core import batch_to_ids, load_bilm
from elmo_core.directions import run_queued, run_side_by_side
from elmo_core.errors import BackboneUsageError
from elmo_core.lstm import ProjectedLstmLayer
from helpers import write_random_model

SENTENCES = [
    "The dog let out a sharp bark".split(),
    "Bark".split(),
    "The bark of the ancient oak was rough and grey".split(),
    "Short one".split(),
]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("go_forward", [True, False])
def test_in_place_step_equals_autograd_step_and_leaves_the_initial_state_alone(go_forward):
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(6, 10, 5, cell_clip=0.5, proj_clip=0.4, go_forward=go_forward)
    inputs = torch.randn(5, 7, 6) * 3  # large enough for both clips to bite
    lengths = torch.tensor([3, 7, 1, 5, 7])
    state = (torch.randn(5, 5), torch.randn(5, 10))
    saved = tuple(s.clone() for s in state)
    with_grad, (h_grad, c_grad) = layer(inputs, lengths, state)
    with torch.no_grad():
        in_place, (h_inf, c_inf) = layer(inputs, lengths, state)
    assert with_grad.grad_fn is not None and in_place.grad_fn is None
    assert torch.allclose(with_grad, in_place, atol=1e-6)
    assert torch.allclose(h_grad, h_inf, atol=1e-6) and torch.allclose(c_grad, c_inf, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(state, saved))
    for row, length in enumerate(lengths.tolist()):  # nothing written past a row's end
        assert in_place[row, length:].abs().sum() == 0
    assert in_place.abs().max() <= 0.4 + 1e-7


def test_padding_costs_no_input_gemm_rows():
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(6, 10, 5, None, None, True)
    rows = []
    input_gates = layer.input_gates
    layer.input_gates = lambda packed, *args: rows.append(packed.shape[0]) or input_gates(packed, *args)
    with torch.no_grad():
        layer(torch.randn(3, 9, 6), torch.tensor([9, 2, 4]))
    layer(torch.randn(3, 9, 6), torch.tensor([9, 2, 4]))  # with autograd
    assert rows == [15, 15]


def test_directions_side_by_side_equal_one_after_the_other(tiny_model, restore_threads):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        torch.set_num_threads(1)
        serial = bilm(ids).layers
        torch.set_num_threads(2)
        side_by_side = bilm(ids).layers
        assert torch.get_num_threads() == 2
    assert torch.allclose(serial, side_by_side, atol=1e-6)


def test_worker_inherits_inference_mode_and_autocast(restore_threads):
    torch.set_num_threads(2)
    seen = {}

    def backward():
        seen["grad"] = torch.is_grad_enabled()
        seen["inference"] = torch.is_inference_mode_enabled()
        seen["autocast"] = torch.is_autocast_enabled("cpu")
        seen["thread"] = threading.current_thread().name
        return torch.mm(torch.randn(2, 3), torch.randn(3, 2)).dtype

    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        forward_dtype, backward_dtype = run_side_by_side(
            lambda: torch.mm(torch.randn(2, 3), torch.randn(3, 2)).dtype, backward, "cpu"
        )
    assert seen == {"grad": False, "inference": True, "autocast": True, "thread": seen["thread"]}
    assert seen["thread"] != threading.current_thread().name
    assert forward_dtype == backward_dtype == torch.bfloat16


def test_a_failing_direction_raises_and_restores_the_thread_count(restore_threads):
    torch.set_num_threads(2)

    def backward():
        raise RuntimeError("backward direction failed")

    with torch.no_grad(), pytest.raises(RuntimeError, match="backward direction failed"):
        run_side_by_side(lambda: 1, backward, "cpu")
    assert torch.get_num_threads() == 2


def test_bf16_autocast_runs_side_by_side_close_to_fp32(tmp_path, restore_threads):
    options, weights = write_random_model(tmp_path)
    fp32 = load_bilm(options=options, weights=weights)
    bf16 = load_bilm(options=options, weights=weights, precision="bf16")
    ids = batch_to_ids(SENTENCES)
    torch.set_num_threads(2)
    with torch.no_grad():
        exact, approximate = fp32(ids).layers, bf16(ids).layers
    assert approximate.dtype == torch.float32
    assert (exact - approximate).abs().max() < 0.1 * exact.abs().max()


@pytest.mark.parametrize("dtype, tolerance", [(torch.bfloat16, 1e-2), (torch.float16, 1e-3)])
def test_in_place_step_under_autocast_keeps_the_cell_state_in_float32(dtype, tolerance):
    torch.manual_seed(0)
    layer = ProjectedLstmLayer(6, 10, 5, 3.0, 3.0, True)
    inputs, lengths = torch.randn(4, 7, 6) * 2, torch.tensor([7, 3, 5, 1])
    with torch.autocast("cpu", dtype=dtype):
        with_grad, (_, c_grad) = layer(inputs, lengths)
        with torch.no_grad():
            in_place, (_, c_inf) = layer(inputs, lengths)
    assert in_place.dtype == with_grad.dtype == dtype
    assert c_inf.dtype == c_grad.dtype == torch.float32
    assert (in_place.float() - with_grad.float()).abs().max() < tolerance


@pytest.mark.parametrize("method", ["script", "compile"])
def test_fused_cells_give_the_same_vectors(tiny_model, method):
    from elmo_core.lstm import fuse_cells

    plain = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    fused = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    assert fuse_cells(fused, method) == 4  # 2 layers x 2 directions
    ids = batch_to_ids(SENTENCES)
    with torch.no_grad():
        assert torch.allclose(plain(ids).layers, fused(ids).layers, atol=1e-6)


def test_an_unknown_fuse_method_is_named(tiny_model):
    from elmo_core.lstm import fuse_cells

    with pytest.raises(ValueError, match="fuse method must be one of compile, script, got 'jit'"):
        fuse_cells(load_bilm(options=tiny_model[0], weights=tiny_model[1]), "jit")


def test_queue_returns_results_in_task_order_using_both_threads_at_half_the_count_each(restore_threads):
    torch.set_num_threads(4)  # more threads than this machine's cores is fine: only the counts matter
    seen = []

    def task(i):
        def run():
            time.sleep(0.01)  # long enough that the worker starts before the caller has done them all
            seen.append((threading.current_thread().name, torch.get_num_threads()))
            return i * i

        return run

    with torch.no_grad():
        assert run_queued([task(i) for i in range(12)], "cpu") == [i * i for i in range(12)]
    assert {count for _, count in seen} == {2}
    assert len({name for name, _ in seen}) == 2
    assert torch.get_num_threads() == 4
    torch.set_num_threads(3)  # an odd count: both threads get 1, so a task's bits do not depend on its thread
    with torch.no_grad():
        run_queued([lambda: seen.append(torch.get_num_threads())] * 4, "cpu")
    assert seen[-4:] == [1, 1, 1, 1]


def test_queue_runs_in_order_on_the_caller_with_autograd_or_one_thread(restore_threads):
    order = []
    tasks = [lambda i=i: order.append((i, threading.current_thread().name)) for i in range(4)]
    torch.set_num_threads(2)
    run_queued(tasks, "cpu")  # grad enabled: autograd needs one thread of control
    torch.set_num_threads(1)
    with torch.no_grad():
        run_queued(tasks, "cpu")
    assert order == [(i, threading.current_thread().name) for i in range(4)] * 2


def test_a_failing_task_stops_the_queue_and_raises(restore_threads):
    torch.set_num_threads(2)
    started = []

    def task(i):
        def run():
            started.append(i)
            time.sleep(0.02)
            if i == 1:
                raise ValueError("task 1 failed")

        return run

    with torch.no_grad(), pytest.raises(ValueError, match="task 1 failed"):
        run_queued([task(i) for i in range(20)], "cpu")
    assert len(started) < 6  # each thread stops taking tasks once one has failed
    assert torch.get_num_threads() == 2


def test_forward_many_equals_forward_per_batch_bitwise_and_repeats(tiny_model, restore_threads):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    batches = [SENTENCES, SENTENCES[1:3], [["One"]], SENTENCES[::-1]]
    ids = [batch_to_ids(batch) for batch in batches] + [batch_to_ids([])]
    torch.set_num_threads(2)
    with torch.no_grad():
        one_by_one = [bilm(i).layers for i in ids]
        together = [bilm.forward_many(ids) for _ in range(3)]
    for run in together:
        assert [out.layers.shape for out in run] == [layers.shape for layers in one_by_one]
        assert all(torch.equal(out.layers, layers) for out, layers in zip(run, one_by_one))
    assert one_by_one[-1].shape[1] == 0


def test_forward_many_checks_every_batch_before_running_any(tiny_model):
    bilm = load_bilm(options=tiny_model[0], weights=tiny_model[1])
    ran = []
    bilm.run_lstm_batches = lambda *args: ran.append(args)
    bad = batch_to_ids(SENTENCES)
    bad[1, 0, 0] = 999
    with torch.no_grad(), pytest.raises(BackboneUsageError, match="holds 999 at sentence 1, token 0"):
        bilm.forward_many([batch_to_ids(SENTENCES), bad])
    assert ran == []


def test_stateful_forward_many_carries_state_batch_to_batch_as_forward_does(tiny_model, restore_threads):
    first = load_bilm(options=tiny_model[0], weights=tiny_model[1], stateful=True)
    second = load_bilm(options=tiny_model[0], weights=tiny_model[1], stateful=True)
    ids = [batch_to_ids(SENTENCES[:2]), batch_to_ids(SENTENCES[2:]), batch_to_ids(SENTENCES[:2])]
    torch.set_num_threads(2)
    with torch.no_grad():
        one_by_one = [first(i).layers for i in ids]
        together = second.forward_many(ids)
    assert all(torch.equal(out.layers, layers) for out, layers in zip(together, one_by_one))
    assert not torch.equal(one_by_one[0], one_by_one[2])  # the third batch started from carried state
