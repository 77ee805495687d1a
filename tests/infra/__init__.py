"""Tests of infra/: the CloudFormation stack, statically and deployed to the emulator."""
