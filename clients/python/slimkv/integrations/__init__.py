"""Engine integrations: slimkv.integrations.hf (Hugging Face transformers' generate). Each
imports its engine lazily; `import slimkv` never needs one."""
