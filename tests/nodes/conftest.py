"""Shared set-up for node tests."""

import torch

# Small tensors: thread start-up would cost more than the work, and parallel test runs
# should not oversubscribe the machine.
torch.set_num_threads(1)
