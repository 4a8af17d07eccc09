"""PKCS#12 packing and the key pool."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from chaos.launch import LaunchError, wait_for
from connector.pki import KeyPool, KeyType, PfxError, generate_key, load_pfx, pack_pfx
from connector.pki.keypool import _Turns, usable_cpus
from connector.pki.keys import PrivateKey
from tests.unit.pki._ca import make_intermediate, make_root


def test_pfx_round_trips_key_certificate_chain_and_friendly_name() -> None:
    root = make_root()
    issuing = make_intermediate(root)
    key = generate_key(KeyType.P256)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev")])
    cert = issuing.sign(subject, key.public_key())
    pfx = pack_pfx(key, cert, [issuing.certificate, root.certificate], "corp-wifi")
    opened_key, opened_cert, chain = load_pfx(pfx)
    assert opened_key.public_key() == key.public_key()
    assert opened_cert == cert
    assert chain == [issuing.certificate, root.certificate]
    from cryptography.hazmat.primitives.serialization import pkcs12

    assert pkcs12.load_pkcs12(pfx, None).cert.friendly_name == b"corp-wifi"  # type: ignore[union-attr]


def test_pfx_refuses_a_certificate_of_another_key_and_garbage() -> None:
    root = make_root()
    cert = root.sign(root.certificate.subject, generate_key(KeyType.P256).public_key())
    with pytest.raises(PfxError, match="does not belong"):
        pack_pfx(generate_key(KeyType.P256), cert, [], "x")
    with pytest.raises(PfxError):
        load_pfx(b"not a pfx")


class CountingGenerator:
    """Hands out cheap keys and can be held back, to observe the pool without sleeping."""

    def __init__(self) -> None:
        self.generated = 0
        self.gate = threading.Event()
        self.gate.set()
        self.lock = threading.Lock()
        self._key = generate_key(KeyType.P256)

    def __call__(self, key_type: KeyType) -> PrivateKey:
        self.gate.wait()
        with self.lock:
            self.generated += 1
        return generate_key(KeyType.P256) if key_type is KeyType.P256 else self._key


def test_pool_fills_to_its_bound_and_no_further() -> None:
    gen = CountingGenerator()
    with KeyPool({KeyType.P256: 5, "rsa2048": 2}, workers=2, generate=gen) as pool:
        assert pool.wait_full(timeout=10)
        assert pool.available(KeyType.P256) == 5
        assert pool.available(KeyType.RSA2048) == 2
        assert gen.generated == 7
        pool.take(KeyType.P256)
        assert pool.wait_full(timeout=10)  # the taken slot is refilled
        assert gen.generated == 8
    assert pool.available(KeyType.P256) == 0  # stop() drops every key


def test_pool_hands_each_key_out_once_and_generates_inline_when_empty() -> None:
    gen = CountingGenerator()
    pool = KeyPool({KeyType.P256: 3}, generate=gen).start()
    assert pool.wait_full(timeout=10)
    gen.gate.clear()  # hold the background filler
    taken = [pool.take(KeyType.P256) for _ in range(3)]
    assert len({id(k) for k in taken}) == 3
    assert pool.stats()["hits"] == 3
    gen.gate.set()
    extra = pool.take(KeyType.P384)  # not pooled: generated on the spot
    assert extra is not None
    assert pool.stats()["misses"] == 1
    pool.stop()


def _wait_for_misses(pool: KeyPool, count: int) -> None:
    """Until ``count`` callers found the pool empty (each then waits for, or makes, a key)."""
    wait_for(lambda: pool.stats()["misses"] == count, timeout=10, what=f"{count} misses")


def _never(condition: Callable[[], bool], what: str) -> None:
    """``condition`` stays false for 0.3 s (the callers it is about are all waiting)."""
    with pytest.raises(LaunchError):
        wait_for(condition, timeout=0.3, what=what, interval=0.005)


class HeldGenerator:
    """Each key waits for its own release; records who entered, in order."""

    def __init__(self) -> None:
        self.entered: list[str] = []
        self.release: dict[str, threading.Event] = {}
        self.lock = threading.Lock()
        self._key = generate_key(KeyType.P256)

    def __call__(self, key_type: KeyType) -> PrivateKey:
        name = threading.current_thread().name
        with self.lock:
            self.entered.append(name)
        self.release[name].wait(timeout=10)
        return self._key


def test_an_empty_pool_makes_keys_on_demand_one_at_a_time_in_the_order_asked() -> None:
    gen = HeldGenerator()
    pool = KeyPool({KeyType.P256: 0}, generate=gen, on_demand=1)
    callers = []
    for name in ("first", "second", "third"):
        gen.release[name] = threading.Event()
        caller = threading.Thread(target=pool.take, args=(KeyType.P256,), name=name)
        caller.start()
        callers.append(caller)
        _wait_for_misses(pool, len(callers))
    # The others asked too, and wait their turn: none may start its key meanwhile.
    _never(lambda: len(gen.entered) > 1, "a second key started")
    assert gen.entered == ["first"]
    gen.release["first"].set()
    wait_for(lambda: len(gen.entered) == 2, timeout=10, what="the second key started")
    gen.release["second"].set()
    gen.release["third"].set()
    for caller in callers:
        caller.join(timeout=10)
    assert gen.entered == ["first", "second", "third"]


def test_a_finished_key_wakes_the_next_caller_in_line_and_no_other() -> None:
    turns = _Turns(1)
    assert turns.join() is None  # a free slot: go at once
    gates = [turns.join() for _ in range(3)]
    assert all(gate is not None and gate.locked() for gate in gates)
    turns.leave()
    assert [gate.locked() for gate in gates if gate] == [False, True, True]
    turns.leave()
    assert [gate.locked() for gate in gates if gate] == [False, False, True]
    turns.leave()
    turns.leave()  # the last holder leaves with nobody waiting: the slot is free again
    assert turns.join() is None


def test_a_key_that_fails_passes_the_turn_on() -> None:
    calls: list[str] = []

    def failing_first(key_type: KeyType) -> PrivateKey:
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise RuntimeError("keygen failed")
        return generate_key(KeyType.P256)

    pool = KeyPool({KeyType.P256: 0}, generate=failing_first, on_demand=1)
    with pytest.raises(RuntimeError, match="keygen failed"):
        pool.take(KeyType.P256)
    taken: list[PrivateKey] = []
    caller = threading.Thread(target=lambda: taken.append(pool.take(KeyType.P256)))
    caller.start()
    caller.join(timeout=10)
    assert len(taken) == 1


def test_on_demand_keys_default_to_one_per_usable_cpu() -> None:
    gen = HeldGenerator()
    pool = KeyPool({KeyType.P256: 0}, generate=gen)
    cpus = usable_cpus()
    callers = []
    for i in range(cpus + 1):
        gen.release[f"k{i}"] = threading.Event()
        caller = threading.Thread(target=pool.take, args=(KeyType.P256,), name=f"k{i}")
        caller.start()
        callers.append(caller)
    _wait_for_misses(pool, cpus + 1)
    wait_for(lambda: len(gen.entered) == cpus, timeout=10, what=f"{cpus} keys started")
    _never(lambda: len(gen.entered) > cpus, "a key beyond one per CPU started")
    for event in gen.release.values():
        event.set()
    for caller in callers:
        caller.join(timeout=10)
    assert len(gen.entered) == cpus + 1


def test_pool_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        KeyPool({KeyType.P256: 1}, workers=0)
    with pytest.raises(ValueError, match="capacity"):
        KeyPool({KeyType.P256: -1})
    with pytest.raises(ValueError, match="on_demand"):
        KeyPool({KeyType.P256: 0}, on_demand=0)
