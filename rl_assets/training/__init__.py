"""Training a FinQA tool-use policy: SFT on oracle trajectories, then GRPO over the environment (TRL).

    python -m rl_assets.train --config tiny-local --snapshot <dir> --output <dir>

Modules: `config` (the YAML config), `tiny` / `chat_template` (the self-built model, tokenizer and compact
template), `environment` (the trainer's FinQAEnv with per-episode aliases), `trajectories` / `data`
(oracle conversations, GRPO rows), `rewards` (rubric shaping terms), `sft` / `grpo` (the TRL stages),
`callbacks` / `reporting` (metrics, samples, Dagster Pipes), `run` (one resumable run), `lineage`, `plots`.
"""
