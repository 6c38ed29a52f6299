"""Training algorithms, one module each: a settings dataclass, the pure pieces, the trainer.

  ppo         rlxf's LoRA-PPO (`PPOSettings`, GAE, clipped losses, k1/k3 KL, `PPOTrainer`)
  sft         LoRA SFT with transformers.Trainer or TRL's SFTTrainer
  dpo         DPO with TRL's DPOTrainer on LoRA, and its implicit reward
  trl_online  TRL's GRPOTrainer / RLOOTrainer on any rlxf reward
"""
