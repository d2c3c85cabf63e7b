"""Training: the task-agnostic loop (`engine`) with its step (`steps`, `shards`), stop
(`stop`) and checkpoint (`checkpointer`) parts, the optimiser and lr schedule (`optim`),
pretraining monitors (`monitors`), and the entry points that wire config, data, model and
task into it (`runner`: pretrain and finetune; `evaluation`: a trained run on the test set).
"""
