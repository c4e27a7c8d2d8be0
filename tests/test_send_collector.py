"""The garbage collector held back during a send is as it was once the send is over."""

from __future__ import annotations

import gc

import pytest

from newsletter.sending.collector import THRESHOLDS, fewer_collections


def test_a_send_freezes_what_exists_and_raises_the_thresholds_while_it_runs():
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_collector_is_restored_when_the_send_fails():
    before = gc.get_threshold()

    @fewer_collections()
    def failing_send():
        raise RuntimeError("the list could not be read")

    with pytest.raises(RuntimeError):
        failing_send()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_a_send_are_still_collected():
    class Node:
        pass

    with fewer_collections():
        node = Node()
        node.self = node
        del node
        assert gc.collect() > 0
