"""solvers/data._Ahead: the next pass's draw is read on a worker thread while a step computes,
with the same batches, in the same order, as reading each draw when it is asked for."""
import threading

import numpy as np
import pytest

from fcn_port.port.errors import UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text
from fcn_port.port.net import filter_layers
from fcn_port.solvers.data import Feeder, source_layers

NET = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }'


def _layers():
    net, _ = parse_text(NET, caffe_pb2.NetParameter)
    return source_layers(filter_layers(net, "TRAIN"))


class Recording:
    """An indexed source that draws from a stateful RNG advanced by each read (as a reader
    replaying a random order would be if read out of turn) and logs who read what."""

    def __init__(self, n=100, fail_at=None):
        self.n, self.fail_at, self.reads = n, fail_at, []
        self.rng = np.random.default_rng(0)
        self.asked = {d: threading.Event() for d in range(n)}

    def __len__(self):
        return self.n

    def __getitem__(self, d):
        self.reads.append((d, threading.current_thread().name))
        self.asked[d].set()
        if d == self.fail_at:
            raise UserInputError(f"batch {d} is broken")
        return {"data": np.array([d + self.rng.random()], np.float32)}


def _run(prefetch, passes):
    src = Recording()
    feeder = Feeder(_layers(), src, iter_size=2, prefetch=prefetch)
    return [float(feeder(it, p)["data"][0]) for it, p in passes], src


def test_the_same_batches_in_the_same_order_as_without_prefetch():
    passes = [(it, p) for it in range(6) for p in range(2)]
    ahead, src = _run(True, passes)
    plain, ref = _run(False, passes)
    assert ahead == plain
    assert src.asked[12].wait(10)
    order = [d for d, _ in ref.reads]  # peek's 0, then 0, 1, ..., 11
    assert [d for d, _ in src.reads] == order + [12]  # and the guess of the pass after
    assert {who for _, who in src.reads[1:]} == {"fcn-port-prefetch_0"}  # one worker reads


def test_the_next_draw_is_read_before_it_is_asked_for():
    src = Recording()
    feeder = Feeder(_layers(), src, iter_size=2)
    feeder(0, 0)
    assert src.asked[1].wait(10)  # pass 1 of iteration 0, read while "the step" runs
    feeder(0, 1)
    assert src.asked[2].wait(10)  # then iteration 1's first pass


def test_a_guess_not_taken_is_dropped_and_the_asked_draw_served():
    src = Recording()
    feeder = Feeder(_layers(), src, iter_size=1)
    feeder(0)
    assert src.asked[1].wait(10)
    assert int(feeder(7)["data"][0]) == 7  # a resume elsewhere: draw 7, not the guessed 1


def test_an_error_in_a_prefetched_draw_surfaces_when_that_draw_is_taken():
    src = Recording(fail_at=1)
    feeder = Feeder(_layers(), src, iter_size=1)
    assert int(feeder(0)["data"][0]) == 0
    with pytest.raises(UserInputError):
        feeder(1)
