"""OpenRLHF `--reward.remote_url` reward for math prompts: 1 if the response's last \\boxed{} answer
equals the label (OpenRLHF's own grader, openrlhf.utils.math_utils), else 0."""

import torch
from openrlhf.utils.math_utils import extract_boxed_answer, grade_answer


def reward_func(queries, prompts, labels):
    rewards = []
    for query, prompt, label in zip(queries, prompts, labels):
        response = query[len(prompt):] if query.startswith(prompt) else query
        answer = extract_boxed_answer(response)
        rewards.append(1.0 if answer is not None and grade_answer(answer, str(label)) else 0.0)
    rewards = torch.tensor(rewards, dtype=torch.float)
    return {"rewards": rewards, "scores": rewards, "extra_logs": {"accuracy": rewards}}
