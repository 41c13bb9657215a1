"""Tests for tensornn.rl: exact solution of factored MDPs (against an independent NumPy solver and gymnasium's own
environments played for real), the Tesseract rank bound, the CoopGrid environment (gymnasium's env checker), greedy
actions of CP and TT Q-tensors, CP ranks by fitting, tensor completion and fitted Q-iteration from samples, low-rank
Q-iteration and CP/TT Q-learning, and bad input."""
from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from hypothesis import given, strategies as st

from tensornn.formats import CPTensor, TTTensor, random_cp, random_tt
from tensornn.rl import (ActionRanks, CoopGridEnv, FactoredMDP, Transitions, action_multilinear_ranks, action_ranks,
                         cp_complete, fitted_q_iteration, from_gymnasium, greedy_actions, lowrank_q_iteration, q_learning,
                         random_cp_q, random_lowrank_mdp, random_tt_q, rollout_returns, sample_transitions)
from tensornn.rl import _tt_td_step
from tensornn.testing import assert_close

pytestmark = [pytest.mark.usefixtures("single_thread")]
TAXI_SHAPE = (5, 5, 5, 4)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def lake():
    env = gym.make("FrozenLake8x8-v1")
    return env, from_gymnasium(env, state_shape=(8, 8))


@pytest.fixture(scope="module")
def taxi():
    env = gym.make("Taxi-v4")
    return env, from_gymnasium(env, state_shape=TAXI_SHAPE)


def _numpy_q_star(P, n_s, n_a, gamma):
    "Policy iteration straight from gymnasium's dict, with numpy.linalg.solve: an independent solver."
    T, r = np.zeros((n_s, n_a, n_s)), np.zeros((n_s, n_a))
    for s in range(n_s):
        for a in range(n_a):
            for p, s2, rew, done in P[s][a]:
                r[s, a] += p * rew
                if not done: T[s, a, s2] += p
    pol = np.zeros(n_s, dtype=int)
    for _ in range(1000):
        V = np.linalg.solve(np.eye(n_s) - gamma * T[np.arange(n_s), pol], r[np.arange(n_s), pol])
        Q = r + gamma * T @ V
        if np.allclose(Q.max(1), Q[np.arange(n_s), pol], atol=1e-13): return Q
        pol = Q.argmax(1)
    raise AssertionError("numpy policy iteration did not converge")


def _residual(mdp, Q, gamma):
    return float((mdp._backup(Q.reshape(mdp.n_states, -1).amax(-1), gamma).reshape(Q.shape) - Q).abs().max())


# ---------------------------------------------------------------- exact solution
@pytest.mark.parametrize("gamma", [0.9, 0.99])
def test_value_iteration_matches_numpy_on_frozenlake(lake, gamma):
    env, mdp = lake
    Q, rec = mdp.q_optimal(gamma, tol=1e-12)
    assert rec.converged
    Q_np = _numpy_q_star(env.unwrapped.P, 64, 4, gamma)
    live = (~mdp.terminal).numpy()
    np.testing.assert_allclose(Q.reshape(64, 4).numpy()[live], Q_np[live], atol=1e-9)
    assert bool((Q.reshape(64, 4)[mdp.terminal] == 0).all())


def test_bellman_optimality_residual(lake, taxi):
    for (_, mdp), gamma in ((lake, 0.99), (taxi, 0.99), (taxi, 0.5)):
        Q, _ = mdp.q_optimal(gamma)
        assert _residual(mdp, Q, gamma) < 1e-8


def test_policy_evaluation_matches_numpy_and_iteration(lake):
    env, mdp = lake
    pi = torch.rand(2, 8, 8, 4, generator=_gen(1), dtype=torch.float64)
    pi = pi / pi.sum(-1, keepdim=True)
    Q = mdp.q_policy(pi, 0.95)
    assert Q.shape == (2, 8, 8, 4)
    # iterate the Bellman expectation operator from zero: converges to the same Q
    Qi = torch.zeros_like(Q).reshape(2, 64, 4)
    for _ in range(2000):
        Qi = mdp._backup((pi.reshape(2, 64, 4) * Qi).sum(-1), 0.95)
    assert_close(Qi.reshape(Q.shape), Q, rtol=0, atol=1e-10)
    assert_close(mdp.q_policy(pi[1], 0.95), Q[1])                          # batch = one at a time
    assert_close(mdp.v_policy(pi, 0.95), (pi * Q).sum(-1))


def test_greedy_policy_of_q_star_solves_taxi_from_every_start_state(taxi):
    env, mdp = taxi
    Q, _ = mdp.q_optimal(0.99)
    idx = np.stack(np.unravel_index(np.arange(500), TAXI_SHAPE), -1)
    starts = [s for s, (_, _, p, d) in enumerate(idx) if p < 4 and p != d]
    assert len(starts) == 300
    ret = rollout_returns(env, greedy_actions(Q, 1), state_shape=TAXI_SHAPE, start_states=starts)
    assert float(ret.min()) > 0                 # a failed episode costs >= 200; a delivery earns 20
    v = mdp.v_policy(greedy_actions(Q, 1), 1e-12 + 0.99).reshape(-1)[starts]
    assert_close(v, Q.reshape(500, 6).amax(-1)[starts], rtol=0, atol=1e-8)


def test_iterative_policy_evaluation_matches_solve(lake, taxi):
    _, mdp = taxi
    acts = greedy_actions(mdp.q_optimal(0.95)[0], 1)
    assert_close(mdp.v_policy(acts, 0.95, method="iterate"), mdp.v_policy(acts, 0.95, method="solve"), rtol=0, atol=1e-9)
    _, mdp = lake
    pi = torch.rand(8, 8, 4, generator=_gen(3), dtype=torch.float64)
    pi = pi / pi.sum(-1, keepdim=True)
    assert_close(mdp.q_policy(pi, 0.9, method="iterate"), mdp.q_policy(pi, 0.9, method="solve"), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="method"): mdp.v_policy(pi, 0.9, method="lu")


def test_transition_forms_agree():
    "Dense, CP and outcomes forms of the same transition give the same Q* and Q^pi."
    g = _gen(2)
    S, U = (3, 2), (2, 2)
    R = torch.randn(S + U, generator=g, dtype=torch.float64)
    P = torch.rand(6, 4, 6, generator=g, dtype=torch.float64)
    P = P / P.sum(-1, keepdim=True)
    dense = FactoredMDP(R, P.reshape(S + U + S))
    index = torch.arange(6).expand(6, 4, 6).reshape(S + U + (6,))
    outcomes = FactoredMDP(R, (P.reshape(S + U + (6,)), index), state_shape=S)
    assert_close(dense.q_optimal(0.9)[0], outcomes.q_optimal(0.9)[0])
    # an exactly stochastic CP transition: P(s'|s, u) = sum_r c_r(u_1) x_r(s'_1) y_r(s'_2), rows of c and columns of x, y
    # summing to one
    c = torch.tensor([[0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    x = torch.rand(3, 2, generator=g, dtype=torch.float64); x = x / x.sum(0)
    y = torch.rand(2, 2, generator=g, dtype=torch.float64); y = y / y.sum(0)
    ones = lambda n: torch.ones(n, 2, dtype=torch.float64)
    cp = CPTensor(torch.ones(2, dtype=torch.float64), [ones(3), ones(2), c, ones(2), x, y])
    m_cp, m_dense = FactoredMDP(R, cp), FactoredMDP(R, cp.full())
    assert m_cp.transition_kind == "cp"
    assert_close(m_cp.q_optimal(0.9)[0], m_dense.q_optimal(0.9)[0])
    pi = torch.full(S + U, 0.25, dtype=torch.float64)
    assert_close(m_cp.q_policy(pi, 0.9), m_dense.q_policy(pi, 0.9))
    with pytest.raises(ValueError, match="transition"):
        FactoredMDP(R, CPTensor(torch.ones(2, dtype=torch.float64), [ones(3), ones(2), 2 * c, ones(2), x, y]))


# ---------------------------------------------------------------- the Tesseract rank bound
@given(k1=st.integers(1, 3), k2=st.integers(1, 3), n_agents=st.integers(2, 3), seed=st.integers(0, 10_000),
       gamma=st.floats(0.0, 0.95))
def test_tesseract_rank_bound(k1, k2, n_agents, seed, gamma):
    g = _gen(seed)
    U = (7,) * n_agents
    mdp = random_lowrank_mdp((3,), U, k1, k2, generator=g, dtype=torch.float64)
    pi = torch.rand((2, 3) + U, generator=g, dtype=torch.float64)
    pi = pi / pi.sum(tuple(range(-n_agents, 0)), keepdim=True)
    Q = torch.cat([mdp.q_policy(pi, gamma), mdp.q_optimal(gamma)[0][None]])
    ranks = action_multilinear_ranks(Q, n_agents, tol=1e-9)
    assert int(ranks.max()) <= k1 + k2
    # and the rank is not an artefact of the measurement: a random tensor of the same shape has full rank
    assert bool((action_multilinear_ranks(torch.randn((3,) + U, generator=g, dtype=torch.float64), n_agents) == 7).all())


def test_rank_bound_is_attained():
    mdp = random_lowrank_mdp((2,), (6, 6, 6), 2, 2, generator=_gen(3), dtype=torch.float64)
    Q, _ = mdp.q_optimal(0.9)
    assert bool((action_multilinear_ranks(Q, 3) == 4).all())


def test_random_lowrank_mdp_is_stochastic_and_reproducible():
    a = random_lowrank_mdp((2, 3), (3, 4), 2, 3, generator=_gen(4), dtype=torch.float64)
    b = random_lowrank_mdp((2, 3), (3, 4), 2, 3, generator=_gen(4), dtype=torch.float64)
    assert_close(a._P, b._P)
    assert bool((a._P >= 0).all())
    assert_close(a._P.sum(-1), torch.ones(6, 12, dtype=torch.float64))
    assert random_lowrank_mdp((2,), (3,), 1, 1, generator=_gen(0)).dtype == torch.get_default_dtype()


# ---------------------------------------------------------------- CoopGrid
@pytest.mark.parametrize("mode", [None, "ansi", "rgb_array"])
@pytest.mark.parametrize("n_agents, slip", [(1, 0.0), (2, 0.0), (3, 0.2)])
def test_coopgrid_passes_env_checker(mode, n_agents, slip):
    env = gym.make("tensornn/CoopGrid-v0", n_agents=n_agents, slip=slip, render_mode=mode)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    out = env.render()
    if mode == "ansi": assert isinstance(out, str) and out.count("\n") == 3
    if mode == "rgb_array": assert out.shape == (48, 48, 3) and out.dtype == np.uint8


def test_coopgrid_seeding_and_dynamics():
    env = gym.make("tensornn/CoopGrid-v0", n_agents=3, slip=0.3)
    trajs = []
    for _ in range(2):
        obs, _ = env.reset(seed=7)
        traj = [obs.tolist()]
        for t in range(20):
            obs, r, term, trunc, _ = env.step(np.array([t % 5, (t + 1) % 5, (t + 2) % 5]))
            traj.append((obs.tolist(), r))
            if term or trunc: break
        trajs.append(traj)
    assert trajs[0] == trajs[1]
    e = CoopGridEnv(3, 2, collision_cost=2.0)
    e.reset(seed=0)
    e.pos = np.array([4, 5])                                     # centre and right of centre
    obs, r, term, _, _ = e.step(np.array([4, 0]))                # first agent moves right onto the second
    assert obs.tolist() == [5, 5] and r == -2.0 - 2.0 and not term
    e.pos = np.array([8, 1])
    obs, r, term, _, _ = e.step(np.array([0, 3]))                # both reach their goals (8 and 0)
    assert r == 0.0 and term


def test_coopgrid_table_matches_vectorised_mdp_and_exact_solution():
    for slip in (0.0, 0.2):
        env = CoopGridEnv(3, 2, slip=slip)
        Qa = env.mdp().q_optimal(0.9)[0]
        Qb = from_gymnasium(env).q_optimal(0.9)[0]
        assert_close(Qa, Qb)
    # without collisions and slipping, Q* is the sum of each agent's own Q*: check it against one agent
    two = CoopGridEnv(3, 2, collision_cost=0.0).mdp()
    one0, one1 = CoopGridEnv(3, 1).mdp(), CoopGridEnv(3, 1)
    one1.goals = np.array([0]); one1 = one1.mdp()
    v2 = two.q_optimal(0.9)[0].reshape(81, 25).amax(-1)
    # the team stops paying per agent once home; values add up when the discount is the same
    v_sum = one0.q_optimal(0.9)[0].amax(-1)[:, None] + one1.q_optimal(0.9)[0].amax(-1)[None, :]
    assert_close(v2.reshape(9, 9), v_sum)


def test_greedy_optimal_policy_on_coopgrid_reaches_goal():
    env = gym.make("tensornn/CoopGrid-v0", n_agents=2)
    e = CoopGridEnv(3, 2)
    Q, _ = e.mdp().q_optimal(0.95)
    ret = rollout_returns(env, greedy_actions(Q, 2), state_shape=(9, 9), n_episodes=10)
    assert float(ret.min()) > -10                                  # a lost episode costs at least 50


# ---------------------------------------------------------------- CP greedy actions and low-rank learning
def test_cp_greedy_exact_and_coordinate():
    g = _gen(5)
    q = random_cp_q((4, 3), (5, 5, 5), 3, scale=1.0, generator=g, dtype=torch.float64)
    exact = greedy_actions(q, 3, method="exact")
    assert_close(exact, greedy_actions(q.full(), 3))
    coord = greedy_actions(q, 3, method="coordinate")
    idx = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(3), indexing="ij"), -1).reshape(-1, 2)
    v_c = q.entries(torch.cat([idx, coord.reshape(-1, 3)], 1))
    v_e = q.entries(torch.cat([idx, exact.reshape(-1, 3)], 1))
    assert bool((v_c <= v_e + 1e-12).all())
    assert float((coord == exact).all(-1).double().mean()) >= 0.5
    q1 = random_cp_q((4,), (6, 6, 6), 1, scale=1.0, generator=g, dtype=torch.float64)
    assert_close(greedy_actions(q1, 3, method="coordinate"), greedy_actions(q1, 3, method="exact"))


def test_lowrank_q_iteration_recovers_low_rank_q_star():
    "Without collisions Q* = q_1(s_1, u_1) + q_2(s_2, u_2): TT ranks <= 10 over (s_1, s_2, u_1, u_2), so TT is exact."
    mdp = CoopGridEnv(3, 2, collision_cost=0.0).mdp()
    Q, _ = mdp.q_optimal(0.9)
    tt, rec = lowrank_q_iteration(mdp, 0.9, 10, fmt="tt")
    assert rec.converged
    assert_close(tt.full(), Q, rtol=0, atol=1e-8)
    cp, rec = lowrank_q_iteration(mdp, 0.9, 4, fmt="cp", n_iter=10, generator=_gen(0))
    assert isinstance(cp, CPTensor) and cp.rank == 4 and len(rec.errors) == rec.n_iter


def test_lowrank_q_learning_reaches_stated_return():
    "2-agent CoopGrid: rank-8 CP Q-learning gets within 0.5 of the optimal value in 4000 steps (every seed tried)."
    env = gym.make("tensornn/CoopGrid-v0", n_agents=2)
    mdp = CoopGridEnv(3, 2).mdp()
    starts = ~mdp.terminal.reshape(-1)
    value = lambda Q: float(mdp.v_policy(greedy_actions(Q, 2), 0.95).reshape(-1)[starts].mean())
    best = value(mdp.q_optimal(0.95)[0])
    for seed in (0, 1):
        Q, rec = q_learning(env, state_shape=(9, 9), action_shape=(5, 5), model="cp", rank=8, gamma=0.95,
                            n_steps=4000, seed=seed)
        assert isinstance(Q, CPTensor)
        assert value(Q) > best - 0.5
    Qt, rec = q_learning(env, state_shape=(9, 9), action_shape=(5, 5), model="tabular", gamma=0.95, n_steps=500,
                         eval_fn=value, eval_every=250)
    assert Qt.shape == (9, 9, 5, 5) and len(rec.info["returns"]) == 2


# ---------------------------------------------------------------- TT Q-tensors
def test_tt_greedy_exact_and_heuristic():
    g = _gen(11)
    q = random_tt((4, 3, 5, 5, 5), rank=3, generator=g, dtype=torch.float64)
    dense = q.full()
    exact = greedy_actions(q, 3, method="exact")
    assert_close(exact, greedy_actions(dense, 3))
    st_ = torch.tensor([[0, 2], [3, 1]])
    assert_close(greedy_actions(q, 3, states=st_), exact[st_[:, 0], st_[:, 1]])
    idx = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(3), indexing="ij"), -1).reshape(-1, 2)
    for beam in (1, 4, 125):
        heur = greedy_actions(q, 3, method="coordinate", beam=beam).reshape(-1, 3)
        v_h = q.entries(torch.cat([idx, heur], 1))
        assert bool((v_h <= dense.reshape(12, -1).amax(1) + 1e-12).all())       # never above the true max
    assert_close(heur, exact.reshape(-1, 3))                                     # a beam over all 125 actions: exact
    # positive separable Q (TT ranks 1): the mean-field beam is exact
    pos = TTTensor([torch.rand(1, n, 1, generator=g, dtype=torch.float64) + 0.1 for n in (4, 6, 7, 5)])
    assert_close(greedy_actions(pos, 2, method="coordinate", beam=1), greedy_actions(pos.full(), 2))


def test_tt_td_step_moves_only_the_visited_slices():
    q = random_tt_q((5, 4), (3, 3), 4, generator=_gen(2), dtype=torch.float64)
    before = [G.clone() for G in q.cores]
    x = (1, 2, 0, 2)
    v0 = float(q.entries(torch.tensor([x]))[0])
    delta = float(_tt_td_step(q, x, 2.0, 0.5))
    v1 = float(q.entries(torch.tensor([x]))[0])
    assert abs(delta - (2.0 - v0)) < 1e-12
    assert 0.3 < (v1 - v0) / (2.0 - v0) < 0.7                                    # about half way with lr = 0.5
    for G0, G1, i in zip(before, q.cores, x):
        keep = torch.ones(G0.shape[1], dtype=torch.bool); keep[i] = False
        assert torch.equal(G0[:, keep], G1[:, keep])


@given(seed=st.integers(0, 10_000), rank=st.integers(1, 5))
def test_random_tt_q_shape_and_reproducible(seed, rank):
    q = random_tt_q((3, 4), (2, 5), rank, generator=_gen(seed), dtype=torch.float64)
    assert isinstance(q, TTTensor) and tuple(q.shape) == (3, 4, 2, 5)
    assert max(q.rank) <= rank and float(q.full().abs().max()) < 1.0            # starts near 0
    assert_close(q.full(), random_tt_q((3, 4), (2, 5), rank, generator=_gen(seed), dtype=torch.float64).full())


def test_tt_q_learning_learns_two_agent_gridworld():
    env = gym.make("tensornn/CoopGrid-v0", n_agents=2)
    mdp = CoopGridEnv(3, 2).mdp()
    starts = ~mdp.terminal.reshape(-1)
    value = lambda Q: float(mdp.v_policy(greedy_actions(Q, 2), 0.95).reshape(-1)[starts].mean())
    Q, rec = q_learning(env, state_shape=(9, 9), action_shape=(5, 5), model="tt", rank=8, gamma=0.95, n_steps=4000,
                        eval_fn=value, eval_every=2000, seed=0)
    assert isinstance(Q, TTTensor)
    assert rec.info["returns"][-1] > value(mdp.q_optimal(0.95)[0]) - 1.0


# ---------------------------------------------------------------- CP rank by fitting
def test_action_ranks_cp_by_fitting():
    g = _gen(4)
    x = random_cp((4, 5, 3), 2, generator=g, dtype=torch.float64).full()
    rk = action_ranks(torch.stack([x, torch.zeros_like(x)]), 3, generator=g)
    assert isinstance(rk, ActionRanks)
    assert rk.cp.tolist() == [2, 0] and rk.multilinear.tolist() == [[2, 2, 2], [0, 0, 0]]
    assert float(rk.cp_error[0]) <= rk.rtol
    mdp = random_lowrank_mdp((2,), (4, 4, 4), 2, 1, generator=_gen(4), dtype=torch.float64)
    rk = action_ranks(mdp.q_optimal(0.9)[0], 3, rtol=1e-6, generator=_gen(4))
    assert bool((rk.cp <= 3).all()) and bool((rk.cp >= rk.multilinear.amax(-1)).all())
    one = action_ranks(torch.randn(3, 6, generator=g, dtype=torch.float64), 1)                  # a vector: rank 1
    assert one.cp.tolist() == [1, 1, 1]
    capped = action_ranks(torch.randn(1, 4, 4, 4, generator=g, dtype=torch.float64), 3, max_rank=4, als_iter=20)
    assert capped.cp.tolist() == [5] and float(capped.cp_error[0]) > capped.rtol          # none reached: max_rank + 1


# ---------------------------------------------------------------- completion and fitted Q-iteration from samples
def test_cp_complete_recovers_low_rank_tensor():
    g = _gen(6)
    X = random_cp((10, 11, 12), 3, generator=g, dtype=torch.float64).full()
    M = torch.rand(X.shape, generator=g) < 0.5
    cp, rec = cp_complete(X, M, 3, n_rounds=300, generator=g)
    assert float((cp.full() - X)[~M].norm() / X[~M].norm()) < 1e-6
    assert all(b <= a + 1e-12 for a, b in zip(rec.errors, rec.errors[1:]))
    assert rec.info["observed"] == pytest.approx(float(M.double().mean()))
    nan, _ = cp_complete(X.masked_fill(~M, float("nan")), M, 3, n_rounds=300, generator=_gen(6))   # NaN where missing
    assert_close(nan.full(), cp_complete(X, M, 3, n_rounds=300, generator=_gen(6))[0].full())
    full, _ = cp_complete(X, torch.ones_like(M), 3, n_rounds=3, generator=g)        # every entry: a plain CP fit
    assert float((full.full() - X).norm() / X.norm()) < 1e-6


def test_sample_transitions_follow_the_env():
    env = CoopGridEnv(3, 2)
    data = sample_transitions(gym.make("tensornn/CoopGrid-v0", n_agents=2), 300, state_shape=(9, 9), action_shape=(5, 5), seed=3)
    assert len(data) == 300 and data.states.shape == (300, 2) and data.actions.shape == (300, 2)
    nxt = torch.as_tensor(env.next_cell)[data.states, data.actions]                    # deterministic moves
    assert torch.equal(nxt, data.next_states)
    rew = torch.tensor([env._reward(s.numpy())[0] for s in data.next_states], dtype=torch.float64)
    assert_close(data.rewards, rew)
    assert torch.equal(data.terminated, (data.next_states == torch.as_tensor(env.goals)).all(1))
    again = sample_transitions(gym.make("tensornn/CoopGrid-v0", n_agents=2), 300, state_shape=(9, 9), action_shape=(5, 5), seed=3)
    assert torch.equal(again.actions, data.actions) and torch.equal(again.next_states, data.next_states)
    assert len(data[:10]) == 10


def _all_transitions(mdp, S, U):
    "Every live (s, u) once, with its (deterministic) outcome: a batch that covers the whole table."
    probs, index = mdp._P
    live = (~mdp.terminal).nonzero()[:, 0]
    s = live.repeat_interleave(mdp.n_actions)
    u = torch.arange(mdp.n_actions).repeat(len(live))
    s2 = index[s, u, probs[s, u].argmax(-1)]
    unr = lambda f, shp: torch.stack(torch.unravel_index(f, shp), -1)
    return Transitions(unr(s, S), unr(u, U), mdp.R[s, u], unr(s2, S), mdp.terminal[s2])


def test_fitted_q_iteration_with_full_data_is_value_iteration():
    mdp = CoopGridEnv(3, 2).mdp()
    data = _all_transitions(mdp, (9, 9), (5, 5))
    Q, rec = fitted_q_iteration(data, state_shape=(9, 9), action_shape=(5, 5), gamma=0.9, tol=1e-12, n_iter=500)
    Qs, _ = mdp.q_optimal(0.9)
    live = ~mdp.terminal.reshape(-1)
    assert rec.converged and rec.info["observed"] == pytest.approx(float(live.double().mean()))
    assert_close(Q.reshape(81, 25)[live], Qs.reshape(81, 25)[live], rtol=0, atol=1e-9)
    cp, rec = fitted_q_iteration(data, state_shape=(9, 9), action_shape=(5, 5), gamma=0.9, model="cp", rank=6,
                                 n_iter=5, generator=_gen(0))
    assert isinstance(cp, CPTensor) and cp.rank == 6 and len(rec.info["fit_error"]) == rec.n_iter


def test_lowrank_fitted_q_iteration_from_samples_is_near_optimal():
    "3-agent CoopGrid, 20 000 random transitions (about a third of the entries): the rank-8 fit is near the optimum."
    mdp = CoopGridEnv(3, 3).mdp()
    starts = ~mdp.terminal.reshape(-1)
    value = lambda Q: float(mdp.v_policy(greedy_actions(Q, 3), 0.95).reshape(-1)[starts].mean())
    data = sample_transitions(gym.make("tensornn/CoopGrid-v0", n_agents=3), 20_000, state_shape=(9,) * 3,
                              action_shape=(5,) * 3, seed=1)
    cp, rec = fitted_q_iteration(data, state_shape=(9,) * 3, action_shape=(5,) * 3, gamma=0.95, n_iter=60,
                                 model="cp", rank=8, generator=_gen(0))
    assert all(math.isfinite(e) for e in rec.errors) and len(rec.info["fit_error"]) == rec.n_iter
    assert value(cp) > value(mdp.q_optimal(0.95)[0]) - 2.0


# ---------------------------------------------------------------- bad input
def _toy():
    R = torch.tensor([[0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    P = torch.zeros(2, 2, 2, dtype=torch.float64)
    P[0, 0, 0] = P[0, 1, 1] = P[1, :, 1] = 1.0
    return R, P


def test_bad_transitions():
    R, P = _toy()
    with pytest.raises(ValueError, match="transition: .*summing to 1"): FactoredMDP(R, P * 0.5)
    bad = P.clone(); bad[0, 0, 0], bad[0, 0, 1] = 1.5, -0.5
    with pytest.raises(ValueError, match="transition: .*nonnegative"): FactoredMDP(R, bad)
    with pytest.raises(ValueError, match="transition"): FactoredMDP(R, P[:, :, :1])
    with pytest.raises(TypeError, match="transition"): FactoredMDP(R, "P")
    with pytest.raises(TypeError, match="dtype"): FactoredMDP(R, P.float())
    with pytest.raises(ValueError, match="transition"): FactoredMDP(R, P.masked_fill(P == 1, float("nan")))
    with pytest.raises(ValueError, match="state_shape"): FactoredMDP(R, (P, torch.zeros(2, 2, 2, dtype=torch.long)))
    with pytest.raises(ValueError, match="next_index"):
        FactoredMDP(R, (P, torch.full((2, 2, 2), 5, dtype=torch.long)), state_shape=(2,))
    with pytest.raises(ValueError, match="reward"): FactoredMDP(R.reshape(-1), P)
    with pytest.raises(TypeError, match="terminal"): FactoredMDP(R, P, terminal=torch.tensor([0, 1]))


def test_bad_gamma_rank_policy_and_env():
    R, P = _toy()
    mdp = FactoredMDP(R, P)
    for gamma in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="gamma"): mdp.q_optimal(gamma)
        with pytest.raises(ValueError, match="gamma"): mdp.q_policy(torch.tensor([[0], [0]]), gamma)
    with pytest.raises(TypeError, match="gamma"): mdp.q_optimal("0.9")
    with pytest.raises(ValueError, match="policy"): mdp.q_policy(torch.full((2, 2), 0.7, dtype=torch.float64), 0.9)
    with pytest.raises(ValueError, match="policy"): mdp.q_policy(torch.tensor([[0, 1], [0, 1]]), 0.9)
    with pytest.raises(TypeError, match="policy"): mdp.q_policy([[0], [0]], 0.9)
    for bad in (0, -2):
        with pytest.raises(ValueError, match="rank"): lowrank_q_iteration(mdp, 0.9, bad)
        with pytest.raises(ValueError, match="reward_rank"): random_lowrank_mdp((2,), (2,), bad, 1)
        with pytest.raises(ValueError, match="transition_rank"): random_lowrank_mdp((2,), (2,), 1, bad)
        with pytest.raises(ValueError, match="rank"): random_cp_q((2,), (2,), bad)
    with pytest.raises(TypeError, match="rank"): lowrank_q_iteration(mdp, 0.9, 2.5)
    with pytest.raises(ValueError, match="env:"): from_gymnasium(gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match="env:"): from_gymnasium(object())
    with pytest.raises(ValueError, match="state_shape"): from_gymnasium(gym.make("Taxi-v4"), state_shape=(5, 5))
    with pytest.raises(ValueError, match="action_shape"): from_gymnasium(gym.make("Taxi-v4"), action_shape=(4,))
    with pytest.raises(ValueError, match="model"):
        q_learning(gym.make("Taxi-v4"), state_shape=TAXI_SHAPE, action_shape=(6,), model="dqn")
    with pytest.raises(ValueError, match="n_agents"): greedy_actions(torch.zeros(2, 3, dtype=torch.float64), 0)
    with pytest.raises(TypeError, match="Q"): greedy_actions(np.zeros((2, 3)), 1)
    with pytest.raises(ValueError, match="method"): greedy_actions(torch.zeros(2, 3, dtype=torch.float64), 1, method="x")
    with pytest.raises(ValueError, match="Q"): action_multilinear_ranks(torch.full((2, 3), float("inf")), 1)
    with pytest.raises(ValueError, match="slip"): CoopGridEnv(3, 2, slip=-0.1)
    with pytest.raises(ValueError, match="size"): CoopGridEnv(1, 2)
    with pytest.raises(TypeError, match="policy"):
        rollout_returns(gym.make("Taxi-v4"), "greedy", state_shape=TAXI_SHAPE)


def test_bad_input_of_the_sample_based_and_tt_functions():
    g = _gen(0)
    X = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    M = torch.rand(3, 4, 5, generator=g) < 0.5
    with pytest.raises(TypeError, match="mask"): cp_complete(X, M.double(), 2)
    with pytest.raises(TypeError, match="mask"): cp_complete(X, M[:2], 2)
    with pytest.raises(ValueError, match="mask"): cp_complete(X, torch.zeros_like(M), 2)
    with pytest.raises(ValueError, match="rank"): cp_complete(X, M, 0)
    with pytest.raises(ValueError, match="T"): cp_complete(X.masked_fill(M, float("nan")), M, 2)
    with pytest.raises(TypeError, match="init"): cp_complete(X, M, 2, init="svd")
    with pytest.raises(TypeError, match="T"): cp_complete(X.numpy(), M, 2)
    data = sample_transitions(gym.make("tensornn/CoopGrid-v0", n_agents=2), 50, state_shape=(9, 9), action_shape=(5, 5))
    kw = dict(state_shape=(9, 9), action_shape=(5, 5))
    with pytest.raises(ValueError, match="gamma"): fitted_q_iteration(data, **kw, gamma=1.0)
    with pytest.raises(ValueError, match="model"): fitted_q_iteration(data, **kw, gamma=0.9, model="tt")
    with pytest.raises(ValueError, match="rank"): fitted_q_iteration(data, **kw, gamma=0.9, model="cp", rank=0)
    with pytest.raises(TypeError, match="data"): fitted_q_iteration((1, 2), **kw, gamma=0.9)
    with pytest.raises(ValueError, match="data.actions"):
        fitted_q_iteration(data, state_shape=(9, 9), action_shape=(5, 4), gamma=0.9)
    with pytest.raises(ValueError, match="data.states"):
        fitted_q_iteration(dataclasses.replace(data, states=data.states + 9), **kw, gamma=0.9)
    with pytest.raises(ValueError, match="data.next_states"):
        fitted_q_iteration(dataclasses.replace(data, next_states=-data.next_states - 1), **kw, gamma=0.9)
    with pytest.raises(ValueError, match="n_samples"): sample_transitions(gym.make("Taxi-v4"), 0, state_shape=TAXI_SHAPE, action_shape=(6,))
    with pytest.raises(ValueError, match="rank"): random_tt_q((2,), (2,), 0)
    with pytest.raises(ValueError, match="beam"): greedy_actions(random_tt_q((2,), (3,), 2), 1, beam=0)
    with pytest.raises(ValueError, match="n_agents"): greedy_actions(random_tt_q((2,), (3,), 2), 2)
    with pytest.raises(ValueError, match="rtol"): action_ranks(X, 2, rtol=0.0)
    with pytest.raises(ValueError, match="max_rank"): action_ranks(X, 2, max_rank=0)
    with pytest.raises(ValueError, match="Q"): action_ranks(X.masked_fill(M, float("inf")), 2)


def test_mixed_devices_and_dtypes():
    R, P = _toy()
    with pytest.raises(TypeError, match="dtype"): FactoredMDP(R.float(), P)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"): FactoredMDP(R.cuda(), P)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_value_iteration_and_policy_evaluation():
    env = gym.make("Taxi-v4")
    cpu = from_gymnasium(env, state_shape=TAXI_SHAPE)
    gpu = from_gymnasium(env, state_shape=TAXI_SHAPE, device="cuda")
    Qc, _ = cpu.q_optimal(0.99)
    Qg, _ = gpu.q_optimal(0.99)
    assert Qg.device.type == "cuda"
    assert_close(Qg.cpu(), Qc)
    acts = greedy_actions(Qg, 1)
    assert acts.device.type == "cuda"
    assert_close(gpu.q_policy(acts, 0.99).cpu(), cpu.q_policy(acts.cpu(), 0.99), rtol=0, atol=1e-8)
    m = random_lowrank_mdp((4,), (8, 8, 8), 2, 3, generator=_gen(0), dtype=torch.float64, device="cuda")
    assert m.q_optimal(0.9)[0].device.type == "cuda"
    q = random_cp_q((9, 9, 9), (5, 5, 5), 8, generator=_gen(1), dtype=torch.float64, device="cuda")
    assert greedy_actions(q, 3, method="coordinate").device.type == "cuda"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tt_greedy_completion_and_ranks():
    qc = random_tt_q((9, 9), (5, 5, 5), 4, scale=1.0, generator=_gen(1), dtype=torch.float64)
    qg = qc.to("cuda")
    for method in ("exact", "coordinate"):
        u = greedy_actions(qg, 3, method=method)
        assert u.device.type == "cuda"
        assert_close(u.cpu(), greedy_actions(qc, 3, method=method))
    X = random_cp((6, 7, 8), 2, generator=_gen(2), dtype=torch.float64).full()
    M = torch.rand(X.shape, generator=_gen(3)) < 0.6
    cpc, _ = cp_complete(X, M, 2, n_rounds=20)
    cpg, _ = cp_complete(X.cuda(), M.cuda(), 2, n_rounds=20)
    assert cpg.weights.device.type == "cuda"
    assert_close(cpg.full().cpu(), cpc.full(), rtol=1e-6, atol=1e-8)
    rk = action_ranks(X.cuda()[None], 3)
    assert rk.cp.device.type == "cuda" and rk.cp.tolist() == [2]
    mdp = CoopGridEnv(3, 2).mdp()
    data = _all_transitions(mdp, (9, 9), (5, 5))
    data_g = Transitions(*(t.cuda() for t in (data.states, data.actions, data.rewards, data.next_states, data.terminated)))
    Qg, _ = fitted_q_iteration(data_g, state_shape=(9, 9), action_shape=(5, 5), gamma=0.9, n_iter=200)
    Qc, _ = fitted_q_iteration(data, state_shape=(9, 9), action_shape=(5, 5), gamma=0.9, n_iter=200)
    assert Qg.device.type == "cuda"
    assert_close(Qg.cpu(), Qc)
