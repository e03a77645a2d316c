"""finetune-trainer: the program in the trainer pod (PEFT fine-tuning on S3 datasets)."""

__version__ = "0.1.0"
