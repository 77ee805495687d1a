"""Tests of lambda_trigger/: the trigger Lambda and its batch tracker."""
