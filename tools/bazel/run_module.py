"""Bazel launcher for the binaries: runs ``python -m <module>`` semantics.

A py_binary whose main is ``tfrecords_tools/inspect.py`` would run that file as a
script, with ``tfrecords_tools/`` first on ``sys.path``, where ``inspect.py`` hides the
standard library's ``inspect`` (numpy and TensorFlow import it). Running the module by
name, as ``python -m`` does, keeps the package layout and the standard library intact.

Usage (from BUILD): ``args = ["<package.module>"]``; the remaining arguments are the
binary's own flags.
"""
import os
import runpy
import sys

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    module = sys.argv.pop(1)
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
