"""Dependent signals (consecutive values correlated): their autocorrelation time, the block
means their detectors see, and alerts that stay true on them (default configuration)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from quality_streams import (
    DAY,
    T0,
    ar1,
    dependent_kinds,
    replay,
    seasonal,
    stable_kinds,
    table,
)

from stream.config import load_settings
from stream.monitor.dependence import (
    BlockMeans,
    autocorrelation_time,
    markov_time,
    parts_spread,
    step_at,
    store_strided,
    two_state_time,
)
from stream.monitor.quality import EXTEND, RUNS, TAU_PER_BLOCK, Rates
from stream.monitor.signals import EFFECTIVE, SignalRegistry, _learn_on
from stream.pipeline import Pipeline
from stream.state import dump_model, load_model
from stream.types import Message


def test_independent_warm_ups_of_every_shape_are_found_independent():
    for seed in range(50):
        for name, v in stable_kinds(1000, seed).items():
            z = np.clip((v - v.mean()) / v.std(), -5, 5)
            tau = autocorrelation_time(z)
            # (a rare flag's ~10 ones can fall side by side: then blocks of 2 at most)
            assert tau == 1.0 or (name == "binary_rare" and tau < 2), (seed, name, tau)
    assert autocorrelation_time(np.full(1000, 3.0)) == 1.0


@pytest.mark.parametrize("phi", [0.5, 0.8, 0.9])
def test_the_autocorrelation_time_of_ar1_is_estimated_within_a_factor_of_two(phi):
    true = (1 + phi) / (1 - phi)
    estimates = [autocorrelation_time(ar1(1000, phi, seed)) for seed in range(20)]
    assert all(true / 2 < t < true * 2 for t in estimates), estimates
    assert 0.7 * true < np.median(estimates) < 1.3 * true
    assert autocorrelation_time(ar1(1000, 0.999, 1)) <= 250


def feed(blocks: BlockMeans, Z: np.ndarray, cuts: list[int]) -> np.ndarray:
    edges = [0, *cuts, Z.shape[0]]
    return np.concatenate([blocks.means(Z[a:b]) for a, b in zip(edges, edges[1:], strict=False)])


def test_block_means_do_not_depend_on_how_the_stream_was_cut_nor_on_a_restore():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(1000, 3))
    Z[rng.random(Z.shape) < 0.2] = np.nan
    blocks = BlockMeans()
    blocks.add(3)
    blocks.set_tau(1, 7.4)                  # blocks of 7 values
    blocks.set_tau(2, 2.0)
    whole = feed(blocks, Z, [])
    assert np.array_equal(whole[:, 0], Z[:, 0], equal_nan=True)     # independent: as it is
    col = Z[:, 1][~np.isnan(Z[:, 1])]
    full = col.size // 7 * 7
    expected = col[:full].reshape(-1, 7).mean(axis=1) * np.sqrt(7 / 7.4)
    assert np.allclose(whole[:, 1][~np.isnan(whole[:, 1])], expected)
    # each block's mean stands at the row of its 7th value
    rows = np.flatnonzero(~np.isnan(Z[:, 1]))
    assert np.array_equal(np.flatnonzero(~np.isnan(whole[:, 1])), rows[6:full:7])
    for cuts in ([1, 2, 3], [500], list(range(13, 1000, 97))):
        again = BlockMeans()
        again.add(3)
        again.set_tau(1, 7.4)
        again.set_tau(2, 2.0)
        assert np.array_equal(feed(again, Z, cuts), whole, equal_nan=True)
    first = BlockMeans()
    first.add(3)
    first.set_tau(1, 7.4)
    first.set_tau(2, 2.0)
    head = first.means(Z[:333])
    restored = BlockMeans()
    restored.load_state(first.state_dict())
    assert np.array_equal(np.concatenate([head, restored.means(Z[333:])]), whole, equal_nan=True)


def test_independent_signals_reach_the_detectors_unchanged():
    blocks = BlockMeans()
    blocks.add(4)
    Z = np.ones((10, 4))
    assert blocks.means(Z) is Z


@pytest.mark.parametrize("seed", [0, 1])
def test_stable_dependent_streams_raise_nothing(seed):
    """100k values each of AR(1) series (lag-1 correlation 0.5 to 0.97), heavy-tailed, with
    30% missing values, rounded, counts and a flag that flips every ~100 values."""
    kinds = dependent_kinds(100_000, seed)
    assert replay(table(np.column_stack(list(kinds.values())), list(kinds))) == []


def test_shifts_of_dependent_signals_fire_once_and_resolve_after_they_end():
    phis = [0.5, 0.8, 0.9]
    X = np.column_stack([ar1(100_000, phi, 30 + i) for i, phi in enumerate(phis)])
    X[50_000:70_000] += 1.0
    alerts = replay(table(X, ["ar05", "ar08", "ar09"]))
    for name in ("ar05", "ar08", "ar09"):
        mine = [a for a in alerts if a["signal"] == f"feature:{name}"]
        assert [a["status"] for a in mine] == ["firing", "resolved"], (name, mine)
        fired, resolved = mine
        assert 50_000 <= fired["at"]["offset"] < 53_000 and fired["stats"]["effect_size"] > 0.5
        assert 70_000 <= resolved["at"]["offset"] < 80_000


def test_a_persistent_shift_of_a_dependent_signal_stays_firing_whatever_the_batches():
    x = ar1(80_000, 0.9, 7)
    x[40_000:] += 1.0
    evs = table(x[:, None], ["ar09"])
    alerts = replay(evs)
    assert [(a["status"], a["signal"]) for a in alerts] == [("firing", "feature:ar09")]
    assert 40_000 <= alerts[0]["at"]["offset"] < 43_000
    assert replay(evs, batch=777) == alerts


def bursts(n: int, seed: int) -> np.ndarray:
    """Where a feature is null: bursts of ~50 events (a source offline), ~9% of events."""
    rng = np.random.default_rng(seed)
    u, out, off = rng.random(n), np.zeros(n, dtype=bool), False
    for i in range(n):
        off = u[i] >= 0.02 if off else u[i] < 0.002
        out[i] = off
    return out


@pytest.mark.parametrize("seed", [0, 2, 5, 6])
def test_missing_values_in_bursts_page_nobody_and_a_real_rise_still_fires(seed):
    """Missingness in bursts (its warm-up saw some) is the feature's normal; half the events
    null from event 60,000 is a fault. (A warm-up that saw no burst makes each burst a fault:
    its reference says the feature is never null.) Seeds 5 and 6: warm-ups of 6 and 3 bursts,
    whose rate and burst lengths alone under-read the feature's."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (100_000, 2))
    X[bursts(100_000, seed), 0] = np.nan
    assert replay(table(X)) == []
    X[60_000:, 0][rng.random(40_000) < 0.5] = np.nan
    alerts = replay(table(X))
    assert [(a["status"], a["check"]) for a in alerts] == [("firing", "missing")]
    assert 60_000 <= alerts[0]["at"]["offset"] < 70_000


@pytest.mark.parametrize("seed", [1000, 1003, 1011])
def test_an_outage_of_a_feature_null_in_bursts_fires_while_it_lasts_and_resolves(seed):
    """3,000 events in a row null, in a feature whose warm-up saw a few of its bursts of ~50:
    one episode, firing during the outage, resolved after it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (80_000, 1))
    X[bursts(80_000, seed), 0] = np.nan
    X[40_000:43_000, 0] = np.nan
    alerts = replay(table(X))
    assert [(a["status"], a["check"]) for a in alerts] == [("firing", "missing"), ("resolved", "missing")]
    assert 40_000 <= alerts[0]["at"]["offset"] < 43_000 < alerts[1]["at"]["offset"]


def restarting(evs: list[dict], every: int = 1333) -> list[dict]:
    """The alerts of a replay restarted from model m's checkpoint after every batch."""
    settings = load_settings(env={})
    pipeline, alerts = Pipeline(settings), []
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(evs)]
    for s in range(0, len(msgs), every):
        alerts += pipeline.process(msgs[s:s + every]).alerts
        again = Pipeline(settings)
        load_model(again, dump_model(pipeline, "m"))
        pipeline = again
    return alerts


def test_an_extended_warm_up_is_exact_across_restarts():
    """The outage stream of seed 1003 (its warm-up learns on to ~5,000 values) replayed with a
    restart from the checkpoint after every batch of 1,333 events: the same alerts."""
    rng = np.random.default_rng(1003)
    X = rng.normal(0, 1, (60_000, 1))
    X[bursts(60_000, 1003), 0] = np.nan
    X[40_000:43_000, 0] = np.nan
    evs = table(X)
    straight = replay(evs)
    assert [a["status"] for a in straight] == ["firing", "resolved"]
    assert restarting(evs) == straight


def test_the_markov_time_of_a_two_state_chain():
    """Runs of ~50 ones and ~500 zeros: tau = 2 / (1/50 + 1/500) - 1 = 89.9."""
    v = bursts(200_000, 3).astype(float)
    flips = float(np.count_nonzero(v[1:] != v[:-1]))
    assert 0.8 * 89.9 < markov_time(v.size, v.mean(), flips) < 1.2 * 89.9
    assert markov_time(100, 0.0, 0.0) == np.inf
    assert two_state_time(3 * v - 1) == markov_time(v.size, v.mean(), flips)      # (any units)
    assert two_state_time(np.arange(10.0)) == two_state_time(np.ones(10)) == 1.0


@pytest.mark.parametrize("seed", [1006, 1017, 1000])
def test_a_flag_on_in_bursts_pages_nobody(seed):
    """A 0/1 feature on in bursts of ~50 (9% of events), whose warm-up saw two or three of
    them (seed 1000: one of 10 values): Geyer's sum over so few runs reads a fraction of its
    dependence, its runs do not, and its reference learns on to RUNS runs of each value (or
    EXTEND warm-ups); the joint error learns once the flag's reference is set."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([bursts(80_000, seed).astype(float), rng.normal(0, 1, 80_000)])
    assert replay(table(X)) == []


@pytest.mark.parametrize("seed, runs_end", [(3, 7752), (0, None)])
def test_a_rate_whose_warm_up_saw_few_runs_learns_on_the_same_whatever_the_batches(seed, runs_end):
    """A warm-up of 1,000 values with a few bursts of ones: the rate learns on up to the value
    that completes RUNS runs of each value (seed 3: value 7,752), or up to EXTEND warm-ups
    (seed 0), then takes the Markov chain's tau (at least) and blocks of block /
    TAU_PER_BLOCK independent values' worth; old states load as before."""
    v = bursts(40_000, seed).astype(float)
    t = np.arange(v.size, dtype=float)                        # (a value a second)
    assert 0 < np.count_nonzero(v[1:1000] != v[:999]) < 2 * RUNS
    ends = []
    for chunk in (7, 333, 40_000):
        rates = Rates(1000, 100, 0.25, 5.0)
        rates.ensure(["missing:f"])
        pos = 0
        while not rates.ready(0):
            pos += rates.learn(0, v[pos:pos + chunk], t[pos:pos + chunk])
        ends.append((pos, rates.n[0], rates.p[0], rates.tau[0], rates.blen[0]))
    assert ends[0] == ends[1] == ends[2]
    pos, n, p, tau, blen = ends[0]
    flips = np.count_nonzero(v[1:pos] != v[:pos - 1])
    assert n == pos == (runs_end or EXTEND * 1000)
    assert flips == 2 * RUNS if runs_end else flips < 2 * RUNS
    assert p == v[:pos].mean() and tau >= markov_time(pos, p, flips) and tau > 20
    assert blen == max(100, round(100 * tau / TAU_PER_BLOCK)) > 100
    state = rates.state_dict()
    for key in ("goal", "blen", "flips", "last", "was_off"):
        del state[key]
    rates.load_state(state)
    assert rates.ready(0) and rates.blen[0] == 100


def learned_in_chunks(v: np.ndarray, t: np.ndarray) -> list[tuple[int, Rates]]:
    """A rate's warm-up fed values ``v`` (times ``t``) in chunks of 7, of 333 with a restart
    after each, and all at once, until it is ready: (values taken, the rates) of each."""
    out = []
    for chunk, restart in ((7, False), (333, True), (v.size, False)):
        rates = Rates(1000, 100, 0.25, 5.0)
        rates.ensure(["missing:f"])
        pos = 0
        while not rates.ready(0):
            pos += rates.learn(0, v[pos:pos + chunk], t[pos:pos + chunk])
            if restart:
                again = Rates(1000, 100, 0.25, 5.0)
                again.load_state(rates.state_dict())
                rates = again
        out.append((pos, rates))
    return out


def test_a_rate_whose_warm_up_saw_part_of_a_cycle_learns_on_the_same_whatever_the_batches():
    """A 0/1 rate of 0.3 + 0.2 sin over 4,000 values: the first warm-up sees its rise (its parts'
    rates spread wider than its tau allows) and learns on, a warm-up at a time, until its values
    are whole cycles' worth; its rate and tau are then all of theirs. The same in any chunks and
    across a restart while it learns on; old states load."""
    rng = np.random.default_rng(0)
    t = np.arange(40_000)
    v = (rng.random(t.size) < 0.3 + 0.2 * np.sin(2 * np.pi * t / 4000)).astype(float)
    assert parts_spread(v[:1000], autocorrelation_time(v[:1000]))
    ends = [(pos, r.n[0], r.p[0], r.tau[0], r.blen[0]) for pos, r in learned_in_chunks(v, t)]
    assert ends[0] == ends[1] == ends[2]
    pos, n, p, tau, blen = ends[0]
    assert n == pos == 3000 and p == v[:pos].mean() and tau == autocorrelation_time(v[:pos]) > 20
    assert blen == round(100 * tau / TAU_PER_BLOCK)
    rates = Rates(1000, 100, 0.25, 5.0)
    rates.ensure(["missing:f"])
    rates.learn(0, v[:1500], t[:1500])
    assert rates.goal[0] == 2000 and rates.n[0] == 1500          # learning on
    state = rates.state_dict()
    del state["longer"]
    rates.load_state(state)
    assert rates.longer == {}


def test_a_day_of_values_is_kept_at_even_steps_whatever_the_chunks():
    """store_strided keeps the values at the multiples of its stride, doubling it (every other
    value kept goes) when they would not fit: the buffer is x[::stride] of all it saw, in any
    chunks, for values and for rows."""
    x = np.arange(1.0, 1001.0)
    for chunks in ([1000], [7] * 143, [333, 333, 334], [1, 999]):
        buf, stride, pos = np.zeros(64), 1, 0
        for c in chunks:
            stride = store_strided(buf, stride, pos, x[pos:pos + c])
            pos += c
        kept = (pos - 1) // stride + 1
        assert stride == 16 and np.array_equal(buf[:kept], x[::16])
    rows = np.column_stack([x, -x])
    buf, stride = np.zeros((64, 2)), 1
    for pos in range(0, 1000, 300):
        stride = store_strided(buf, stride, pos, rows[pos:pos + 300])
    assert np.array_equal(buf[:(999 // stride) + 1], rows[::stride])


def test_a_rate_whose_warm_up_spans_part_of_a_day_learns_on_to_a_day_the_same_whatever_the_batches():
    """A 0/1 rate at 20,000 values a day: its warm-up of 1,000 spans 1.2 hours and DAY_EXTEND
    of them more than a day, so it learns on to a day, keeping every other value past EXTEND
    warm-ups (its rate counts them all); the same in any chunks and across a restart. At
    1,000 a day its warm-up spans a day already, and at 100,000 a day DAY_EXTEND warm-ups
    would not: a warm-up is then one. A state saved before warm-ups knew their first time
    measures its span from its next values."""
    rng = np.random.default_rng(0)
    v = (rng.random(30_000) < 0.1).astype(float)
    t = np.arange(v.size) * 4.32
    ends = [(pos, r.n[0], r.p[0], r.tau[0], r.stride[0]) for pos, r in learned_in_chunks(v, t)]
    assert ends[0] == ends[1] == ends[2]
    assert ends[0][:3] == (20_000, 20_000, v[:20_000].mean()) and ends[0][4] == 1
    for step in (86.4, 0.864):
        rates = Rates(1000, 100, 0.25, 5.0)
        rates.ensure(["missing:f"])
        assert rates.learn(0, v, np.arange(v.size) * step) == 1000 and rates.ready(0)
    rates = Rates(1000, 100, 0.25, 5.0)
    rates.ensure(["missing:f"])
    rates.learn(0, v[:500], t[:500])
    state = rates.state_dict()
    del state["first_ts"]
    rates.load_state(state)
    assert rates.learn(0, v[500:], t[500:]) <= 20_000 and rates.ready(0)


def test_a_rate_learning_on_to_a_day_that_steps_keeps_the_values_before_the_step():
    """Null 5% of the time, then from value 2,500 always (10,000 values a day): at value
    3,000 the step is found within a few values of where it was (step_at), and the reference
    is the values before it, whatever the chunks."""
    rng = np.random.default_rng(1)
    v = (rng.random(10_000) < 0.05).astype(float)
    v[2500:] = 1.0
    t = np.arange(v.size) * 8.64
    for chunk in (7, 333, 10_000):
        rates = Rates(1000, 100, 0.25, 5.0)
        rates.ensure(["missing:f"])
        pos, stepped = 0, []
        while not rates.ready(0):
            pos += rates.learn(0, v[pos:pos + chunk], t[pos:pos + chunk])
            stepped += rates.take_stepped()
        n = int(rates.n[0])
        assert (pos, stepped) == (3000, [0]) and 2450 <= n <= 2500 and rates.p[0] == v[:n].mean()


def test_a_spread_that_cycles_a_few_warm_ups_long_pages_nobody():
    """A feature whose sd cycles between 0.5 and 1.5 over 5,000 events: the spread check's
    warm-up (1,000 pairs, 2,000 events) sees part of the cycle and learns on. (With a reference
    of one warm-up it paged 12 times in 60k events.)"""
    rng = np.random.default_rng(2)
    t = np.arange(60_000)
    x = rng.normal(0, 1, t.size) * (1 + 0.5 * np.sin(2 * np.pi * t / 5000))
    assert replay(table(x[:, None])) == []


def sine(n: int, period: int, seed: int) -> np.ndarray:
    """A cycle of 1 sd (amplitude) plus N(0, 1) noise."""
    return np.sin(2 * np.pi * np.arange(n) / period) + np.random.default_rng(seed).normal(0, 1, n)


def test_a_warm_up_learns_on_when_it_is_too_dependent_or_saw_part_of_a_cycle():
    """Independent values: a reference. AR(0.9) (tau ~19): fewer than EFFECTIVE independent
    values' worth in 1,000. The first half of a cycle of 2,000 (seed 260): its autocorrelations
    find it independent, its eight parts' means do not."""
    for seed in range(20):
        z = np.random.default_rng(seed).standard_t(3, 1000)
        assert not _learn_on(z, autocorrelation_time(z))
    z = ar1(1000, 0.9, 1)
    tau = autocorrelation_time(z)
    assert 1000 < EFFECTIVE * tau and _learn_on(z, tau)
    assert not _learn_on(ar1(20_000, 0.9, 1), autocorrelation_time(ar1(20_000, 0.9, 1)))
    half = sine(1000, 2000, 260)
    assert autocorrelation_time(half) == 1.0 and _learn_on(half, 1.0)
    flag = np.zeros(1000)
    flag[100:110] = flag[500:520] = 1.0                 # 2 runs of ones: too few to tell its rate
    assert _learn_on(flag, 1.0)
    flag = np.zeros(1000)
    flag[::25] = 1.0                                    # 40 runs of each: a reference
    assert not _learn_on(flag, 1.0)


@pytest.mark.parametrize("period, seed", [(2000, 260), (5000, 253), (5000, 263)])
def test_an_undeclared_cycle_a_few_warm_ups_long_pages_nobody(period, seed):
    """60k values of a cycle of 2 and 5 warm-ups: the warm-up sees half a cycle (independent to
    its autocorrelations) or a fifth (a trend, or a dependent signal), learns on, and its
    reference spans whole cycles. (With a reference of one warm-up these paged 35, 7 and 12
    times.)"""
    assert replay(table(sine(60_000, period, seed)[:, None])) == []


def test_the_joint_error_of_a_cycle_and_other_features_pages_nobody():
    """The cycle of 5 warm-ups beside an independent and a dependent feature: the joint error
    learns its axes once the features' references are set, standardized by them. (Learning
    from the first rows, a fifth of the cycle, it paged 7 to 12 times in 60k events.)"""
    rng = np.random.default_rng(1)
    X = np.column_stack([sine(60_000, 5000, 1), rng.normal(0, 1, 60_000), ar1(60_000, 0.95, 1)])
    assert replay(table(X)) == []


def test_a_reference_that_learns_on_is_the_same_whatever_the_batches_and_restarts():
    """AR(0.95) learns on to a few thousand values; a shift of 1 sd from 20,000 on stays
    firing: the same alerts in batches of 777 and 5,000 and with a restart from the
    checkpoint after every batch of 1,333 events; old states load as one warm-up's."""
    x = ar1(40_000, 0.95, 5)
    x[20_000:] += 1.0
    evs = table(x[:, None])
    straight = replay(evs)
    assert [a["status"] for a in straight] == ["firing"] and straight[0]["at"]["offset"] >= 20_000
    assert straight[0]["stats"]["n_before"] > 1000
    assert replay(evs, batch=777) == straight
    assert restarting(evs) == straight
    reg = SignalRegistry(8, 1000, 5.0)
    reg.ensure(["feature:f"])
    reg.standardize(x[:1500, None])
    assert reg.goal[0] == 2000 and reg.n[0] == 1500          # learning on
    old = SignalRegistry(8, 1000, 5.0)
    old.ensure(["feature:f"])
    old.standardize(x[:500, None])
    state = old.state_dict()
    del state["goal"], state["longer"]
    old.load_state(state)
    assert old.goal[0] == 1000 and old.n[0] == 500


@pytest.mark.parametrize("phi", [0.8, 0.95])
def test_a_declared_cycle_with_dependent_residuals_pages_nobody_and_a_shift_fires(seasonal_config, phi):
    """1,000 events a day for 40 days, a daily cycle of about +-4 sd, residuals an AR(1) series
    (weather): its profile's first residuals find them dependent."""
    assert replay(seasonal(1000, 40, 3.5, 1, noise_phi=phi), config=seasonal_config) == []
    alerts = replay(seasonal(1000, 40, 3.5, 2, shift_at_day=35, noise_phi=phi), config=seasonal_config)
    assert [(a["status"], a["signal"]) for a in alerts][:1] == [("firing", "feature:load")]
    assert T0 + 35 * DAY <= alerts[0]["at"]["ts"] < T0 + 39 * DAY


def sessions(n: int, seed: int) -> np.ndarray:
    """A category per event that mostly repeats the last one (sessions of ~20 events): shares
    a, b, c, d of 0.4, 0.3, 0.2, 0.1."""
    rng = np.random.default_rng(seed)
    stay, draws = rng.random(n) < 0.95, rng.choice(list("abcd"), n, p=[0.4, 0.3, 0.2, 0.1])
    out = draws.astype(object)
    for i in range(1, n):
        if stay[i]:
            out[i] = out[i - 1]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_categories_in_sessions_page_nobody(seed):
    """Seed 1's warm-up saw "d" in one short run (0.6% of it, 10% overall): its indicator
    takes the dependence of its siblings, not the little its own run shows."""
    rng = np.random.default_rng(seed)
    channel = sessions(100_000, seed)
    assert replay(table(rng.normal(0, 1, (100_000, 1)), ["x"], cats={"channel": channel})) == []


def test_a_step_within_minutes_of_event_time_is_a_fault_an_hour_s_move_is_not():
    """step_at with the values' times: 2 sd from one value to the next is a step (by values
    alone it takes 5 sd); a cycle of 4 sd over the day at its steepest, and an AR(1) series
    at 0.9, are not. 10,000 values a day: three warm-ups of 1,000 span 7.2 hours."""
    rng = np.random.default_rng(4)
    n, lo = 3000, 1000
    t = 6 * 3600 + np.arange(n) * 8.64
    noise = rng.normal(size=n)
    stepped = noise + np.where(np.arange(n) >= 2400, 2.0, 0.0)
    assert abs(step_at(stepped, lo, t=t) - 2400) <= 5
    assert step_at(stepped, lo) == -1
    cycle = 4 * np.sin(2 * np.pi * (t - 6 * 3600) / 86400) + noise
    assert step_at(cycle, lo, t=t) == -1
    ar = np.zeros(n)
    for i in range(1, n):
        ar[i] = 0.9 * ar[i - 1] + np.sqrt(1 - 0.81) * noise[i]
    assert step_at(ar, lo, t=t) == -1
