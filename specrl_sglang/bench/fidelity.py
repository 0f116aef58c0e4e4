"""``specrl-sglang bench fidelity``: how far is each reuse mode from sampling the current policy?

A fixed pair of policies A -> B: A is the workload's warm policy, B is A after `policy_steps` GRPO
steps on these prompts at `--policy-lr` (default 5e-4, five times the workload's training lr: at
1e-4 four steps barely move the tiny policy, and then even l = inf cannot be told from fresh
sampling - the drift must be measurable for the benchmark to be sensitive). For each of `num_prompts` prompts, `num_samples` samples of A are the
drafts. Under B we draw: two independent fresh sets (vanilla), one set in exact mode and one in
spec-rl mode per lenience of the sweep (1, e^0.2, e^0.5, e^1, inf), each from the same drafts.

Reported per mode (and lenience): the total-variation distance between its samples and fresh set 1,
next to the noise floor `tv_noise` = TV(fresh 2, fresh 1) - per prompt over full responses
(`tv`) and over the task's answers (`tv_answer`), averaged over prompts; the mean log p_B of the
samples per token with its standard error; the mean reward with its SE; the reuse (mean accepted
length, full-reuse ratio) and the speedup over a vanilla step of the same size.

Test ("indistinguishable from fresh sampling"): a two-sample chi-square test of homogeneity of
the answer distribution against fresh set 1, per prompt (answers with fewer than 10 pooled
occurrences merged into one bin), statistics and degrees of freedom summed over prompts; plus a
Welch t-test on the per-sample mean log p_B. A mode passes when both p-values are >= 0.01.
`sensitive` says whether the same tests reject l = inf (they must, or the benchmark could not
tell reuse from sampling).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from collections import Counter
from typing import Any

import numpy as np

from specrl_sglang.mean_se import mean_se
from specrl_sglang.plain_json import dumps
from specrl_sglang.stdout_guard import stdout_to_stderr
from specrl_sglang.workload.cli_args import add_workload_args, workload_from_args

SWEEP = (1.0, math.exp(0.2), math.exp(0.5), math.exp(1.0), math.inf)
ALPHA = 0.01
POLICY_LR = 5e-4


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("fidelity", help="distance of exact / spec-rl samples from fresh sampling (A -> B)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--fidelity-prompts", type=int, default=8, help="prompts sampled")
    p.add_argument("--fidelity-samples", type=int, default=256, help="samples per prompt and mode")
    p.add_argument("--policy-steps", type=int, default=4, help="GRPO steps from A to B")
    p.add_argument("--policy-lr", type=float, default=POLICY_LR, help=f"learning rate of those steps (default {POLICY_LR})")
    add_workload_args(p)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> int:
    if args.fidelity_prompts < 1 or args.fidelity_samples < 16 or args.policy_steps < 0:
        raise SystemExit("bench fidelity: need --fidelity-prompts >= 1, --fidelity-samples >= 16, --policy-steps >= 0")
    if not args.policy_lr > 0:
        raise SystemExit("bench fidelity: --policy-lr must be > 0")
    config = dataclasses.replace(workload_from_args(args), lr=args.policy_lr)
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    run = lambda: run_fidelity_bench(config, args.fidelity_prompts, args.fidelity_samples, args.policy_steps, log)  # noqa: E731
    if args.json:
        with stdout_to_stderr():
            result = run()
        print(dumps(result), flush=True)
    else:
        result = run()
        print(f"tv_noise {result['tv_noise']:.3f} (answers {result['tv_answer_noise']:.3f})")
        for name, m in result["table"].items():
            print(f"{name:>14}: tv {m['tv']:.3f} tv_answer {m['tv_answer']:.3f} logp/token {m['logp_mean']:.4f} "
                  f"+- {m['logp_se']:.4f} reward {m['reward_mean']:.3f} accepted {m['mean_accepted_len']:.1f} "
                  f"full {m['full_reuse_ratio']:.2f} speedup {m['speedup']:.2f} p {m['p_answer']:.3g}/{m['p_logp']:.3g}")
        print(result["verdict"])
    return 0


def tv_distance(a: list[Any], b: list[Any]) -> float:
    """Total variation between the empirical distributions of two sample lists."""
    ca, cb = Counter(a), Counter(b)
    return 0.5 * sum(abs(ca[k] / len(a) - cb[k] / len(b)) for k in set(ca) | set(cb))


def homogeneity(groups: list[tuple[list[Any], list[Any]]], min_count: int = 10) -> float:
    """p-value of the summed two-sample chi-square homogeneity test over (sample, reference) pairs."""
    from scipy.stats import chi2

    stat, dof = 0.0, 0
    for a, b in groups:
        ca, cb = Counter(a), Counter(b)
        keys = [k for k in set(ca) | set(cb) if ca[k] + cb[k] >= min_count]
        rows = [[ca[k] for k in keys] + [len(a) - sum(ca[k] for k in keys)],
                [cb[k] for k in keys] + [len(b) - sum(cb[k] for k in keys)]]
        table = np.asarray(rows, dtype=np.float64)
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:
            continue
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
        stat += float(((table - expected) ** 2 / expected).sum())
        dof += table.shape[1] - 1
    return float(chi2.sf(stat, dof)) if dof else 1.0


def run_fidelity_bench(config, num_prompts: int = 8, num_samples: int = 256, policy_steps: int = 4,
                       log=print) -> dict[str, Any]:
    from scipy.stats import ttest_ind

    from radix_cache.trajectory_store import TrajectoryStore
    from specrl_sglang.engine_config import EngineConfig
    from specrl_sglang.rollout_types import RolloutRequest
    from specrl_sglang.runtime import RolloutRuntime
    from specrl_sglang.spec_config import SpecConfig
    from specrl_sglang.workload.training import Batch, Workload, grpo_update

    workload = Workload(dataclasses.replace(config, num_prompts=max(num_prompts, config.num_prompts)), log)
    problems = workload.problems[:num_prompts]
    batch = Batch(problems, [RolloutRequest(k, ids, num_samples) for k, ids in
                             zip(workload.prompt_keys[:num_prompts], workload.prompt_ids[:num_prompts])])
    train_batch = Batch(problems, [RolloutRequest(r.prompt_id, r.prompt_ids, config.samples_per_prompt) for r in batch.requests])
    policy = workload.new_policy()
    kv_tokens = num_prompts * num_samples * (config.max_response_len + 64) + 65536
    engine = EngineConfig(model_path=workload.warm_path, random_seed=config.seed, max_total_tokens=kv_tokens)
    sampling, max_len = workload.sampling, config.max_response_len
    with RolloutRuntime.in_process(engine) as rt:
        rt.update_weights(policy.named_weights())
        drafts = TrajectoryStore(max_tokens=None)
        rt.replace_store(drafts)
        rt.config = SpecConfig(mode="vanilla", seed=config.seed, record=True)
        rt.step(batch.requests, sampling, max_len)  # A's samples become the drafts
        snapshot = {r.prompt_id: drafts.samples(r.prompt_id) for r in batch.requests}
        rt.config = SpecConfig(mode="vanilla", seed=config.seed, record=False)
        for step in range(policy_steps):  # A -> B
            result = rt.step(train_batch.requests, sampling, max_len)
            grpo_update(policy, train_batch, result.samples, workload.rewards(train_batch, result.samples), config.samples_per_prompt)
            rt.update_weights(policy.named_weights())
            log(f"policy step {step + 1}/{policy_steps}: reward {workload.rewards(train_batch, result.samples).mean():.3f}")

        def draw(name: str, mode: str, lenience: float = 1.0):
            store = TrajectoryStore(max_tokens=None)
            for req in batch.requests:
                store.put(req.prompt_id, req.prompt_ids, [(d.token_ids, d.logprobs) for d in snapshot[req.prompt_id]])
            rt.replace_store(store)
            rt.flush_cache()
            rt.config = SpecConfig(mode=mode, lenience=lenience, seed=config.seed + 1, record=False)
            out = rt.step(batch.requests, sampling, max_len)
            log(f"{name}: {out.stats.total_s:.2f} s, full reuse {out.stats.full_reuse_ratio:.2f}")
            return out

        sets = {"fresh": draw("fresh", "vanilla"), "fresh_2": draw("fresh_2", "vanilla"), "exact": draw("exact", "exact")}
        for lenience in SWEEP:
            sets[f"spec_rl@{lenience:.4g}"] = draw(f"spec_rl@{lenience:.4g}", "spec-rl", lenience)

    def per_prompt(result, key):
        groups: list[list[Any]] = [[] for _ in problems]
        for s in result.samples:
            groups[s.prompt_index].append(key(s))
        return groups

    full = lambda s: tuple(int(t) for t in s.token_ids)  # noqa: E731
    answer = lambda s: workload.task.answer_of(workload.decode(s.token_ids)) if s.finish_reason == "stop" else None  # noqa: E731
    fresh_full, fresh_ans = per_prompt(sets["fresh"], full), per_prompt(sets["fresh"], answer)
    fresh_logp = np.array([float(np.mean(s.logprobs)) for s in sets["fresh"].samples])
    vanilla_s = sets["fresh"].stats.total_s
    table: dict[str, Any] = {}
    for name, result in sets.items():
        if name == "fresh":
            continue
        logp = np.array([float(np.mean(s.logprobs)) for s in result.samples])
        rewards = workload.rewards(batch, result.samples)
        ans = per_prompt(result, answer)
        logp_stat, reward_stat = mean_se(logp), mean_se(rewards)
        table[name] = {
            "tv": float(np.mean([tv_distance(a, b) for a, b in zip(per_prompt(result, full), fresh_full)])),
            "tv_answer": float(np.mean([tv_distance(a, b) for a, b in zip(ans, fresh_ans)])),
            "logp_mean": logp_stat.mean, "logp_se": logp_stat.se,
            "reward_mean": reward_stat.mean, "reward_se": reward_stat.se,
            "mean_accepted_len": result.stats.mean_accepted_len, "full_reuse_ratio": result.stats.full_reuse_ratio,
            "speedup": vanilla_s / result.stats.total_s if result.stats.total_s else math.nan,
            "p_answer": homogeneity(list(zip(ans, fresh_ans))),
            "p_logp": float(ttest_ind(logp, fresh_logp, equal_var=False).pvalue),
        }
    return _summary(table, sets, log, num_prompts, num_samples, policy_steps, config)


def _summary(table, sets, log, num_prompts, num_samples, policy_steps, config) -> dict[str, Any]:
    passes = lambda m: m["p_answer"] >= ALPHA and m["p_logp"] >= ALPHA  # noqa: E731
    noise = table.pop("fresh_2")
    lossy = {name.split("@")[1]: m for name, m in table.items() if name.startswith("spec_rl@")}
    tvs = [m["tv_answer"] for m in lossy.values()]
    inf = lossy[f"{math.inf:.4g}"]
    exact_ok, sensitive = passes(table["exact"]), not passes(inf)
    increasing = all(b >= a - 2 * noise["tv_answer"] / math.sqrt(num_prompts) for a, b in zip(tvs, tvs[1:])) and tvs[-1] > tvs[0]
    verdict = (f"exact: {'indistinguishable from' if exact_ok else 'DISTINGUISHABLE from'} fresh sampling "
               f"(answer chi-square p={table['exact']['p_answer']:.3g}, log-prob t-test p={table['exact']['p_logp']:.3g}); "
               f"spec-rl answer tv {' -> '.join(f'{t:.3f}' for t in tvs)} over l = {', '.join(lossy)} (noise {noise['tv_answer']:.3f}); "
               f"l = inf {'is' if sensitive else 'is NOT'} told apart from fresh sampling")
    log(verdict)
    return {
        "tv_noise": noise["tv"], "tv_answer_noise": noise["tv_answer"], "noise": noise,
        "modes": {"exact": table["exact"], "spec_rl": lossy},
        "table": {"fresh_2": noise, **table},
        "exact_indistinguishable": exact_ok, "lossy_tv_increasing": bool(increasing), "sensitive": sensitive,
        "alpha": ALPHA, "verdict": verdict,
        "config": {"num_prompts": num_prompts, "num_samples": num_samples, "policy_steps": policy_steps, "policy_lr": config.lr,
                   "task": config.task, "model_size": config.model_size, "seed": config.seed},
    }
