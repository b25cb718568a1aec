"""The import direction of the project, read from the source (no module is imported).

Four layers, each importing only its own or lower ones:

0. ``tfrecords_tools.runtime``: exit path and errors, locks and temporaries, atomic JSON,
   figures, TensorFlow's quiet start;
1. the dataset tools: the rest of ``tfrecords_tools`` (formats, schema, writers, readers);
2. the ``tf_synchro`` libraries (configs, run_dir, train_lib, data, models, tasks, deploy,
   suite);
3. the binaries (:data:`BINARIES`), which no module imports: the demo and experiments
   binaries run the others as ``python -m <module>`` subprocesses, and tests through
   ``cli.invoke(<name>, ...)``, by name.

Inside the ``tf_synchro`` libraries, levels in the same way (:data:`TF_SYNCHRO_LEVELS`):

a. ``configs``, ``data``, ``models``: the settings, the input pipelines, the networks
   (``configs`` names the pair groupings of ``data/groups``; the pipelines and models
   take configs);
b. ``run_dir``, ``train_lib``: the run directory (typed records, loading the models of a
   run) and the one training loop;
c. ``tasks``: the two tasks (build, train, evaluate a loaded model) and their losses and
   metrics;
d. ``deploy``, ``suite``: serving formats, the deployed-artefact loader and predict's
   pipeline; the experiment suites. A task evaluates what it is handed; knowing export
   directories, ONNX or LiteRT files is deploy's.

And no circle among modules. An import inside a function counts like one at the top: a
late import hides a circle, it does not remove it.
"""
from __future__ import annotations

import ast
import os
import textwrap

PACKAGES = ("tfrecords_tools", "tf_synchro")
RUNTIME = "tfrecords_tools.runtime"
BINARIES = frozenset({
    "tfrecords_tools.synthesize", "tfrecords_tools.rig", "tfrecords_tools.h36m",
    "tfrecords_tools.inspect",
    "tf_synchro.pretrain", "tf_synchro.evaluate_pretext", "tf_synchro.finetune",
    "tf_synchro.evaluate", "tf_synchro.export", "tf_synchro.predict", "tf_synchro.demo",
    "tf_synchro.experiments", "tf_synchro.data_service",
})
# Libraries that also run as a command (a ``main`` at their end); other modules import
# them for their library part, so they sit in their package's library layer.
COMMAND_LIBRARIES = frozenset({"tfrecords_tools.calibration"})
LAYER_NAMES = ("runtime", "dataset tools", "tf_synchro libraries", "binaries")
# The levels inside the tf_synchro libraries, lowest first: (name, module prefixes). A
# library module of no level is refused, so a new one is placed on purpose.
TF_SYNCHRO_LEVELS = (
    ("configs, data, models", ("tf_synchro", "tf_synchro.configs", "tf_synchro.data",
                               "tf_synchro.models")),
    ("run_dir, train_lib", ("tf_synchro.run_dir", "tf_synchro.train_lib")),
    ("tasks", ("tf_synchro.tasks",)),
    ("deploy, suite", ("tf_synchro.deploy", "tf_synchro.suite")),
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_files(root: str) -> dict[str, str]:
    """``{dotted module name: file}`` of every module of :data:`PACKAGES` under ``root``."""
    out = {}
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), root)[:-len(".py")]
                    module = rel.replace(os.sep, ".")
                    out[module[:-len(".__init__")] if module.endswith(".__init__")
                        else module] = os.path.join(folder, name)
    return out


def imports_of(module: str, path: str, modules: dict) -> set[str]:
    """The project modules ``module`` imports (``from pkg import name`` -> ``pkg.name`` when
    that is a module, else ``pkg``), anywhere in the file."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    out = set()
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:  # `import a.b.c` of a non-module name.
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def _defines_main(path: str) -> bool:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return {"main", "define_flags"} <= top


def layer(module: str, binaries=BINARIES) -> int:
    """The layer of ``module`` (index into :data:`LAYER_NAMES`)."""
    if module in binaries:
        return 3
    if module == RUNTIME or module.startswith(RUNTIME + "."):
        return 0
    return 1 if module.split(".")[0] == "tfrecords_tools" else 2


def level(module: str, levels=TF_SYNCHRO_LEVELS):
    """The level of a ``tf_synchro`` library (index into ``levels``), None if it has none
    (the package itself matches only by its own name, not as a prefix)."""
    for i, (_, prefixes) in enumerate(levels):
        if any(module == p or (p != "tf_synchro" and module.startswith(p + "."))
               for p in prefixes):
            return i
    return None


def _cycles(graph: dict) -> list[list[str]]:
    """One listed circle per strongly connected component with more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(u):  # Tarjan's algorithm.
        index[u] = low[u] = len(index)
        stack.append(u)
        on_stack.add(u)
        for v in sorted(graph.get(u, ())):
            if v not in index:
                visit(v)
                low[u] = min(low[u], low[v])
            elif v in on_stack:
                low[u] = min(low[u], index[v])
        if low[u] == index[u]:
            component = []
            while True:
                v = stack.pop()
                on_stack.discard(v)
                component.append(v)
                if v == u:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for u in sorted(graph):
        if u not in index:
            visit(u)
    return found


def _in_tf_synchro_libraries(module: str, binaries) -> bool:
    return layer(module, binaries) == 2 and module.split(".")[0] == "tf_synchro"


def violations(root: str, binaries=BINARIES, command_libraries=COMMAND_LIBRARIES,
               levels=TF_SYNCHRO_LEVELS) -> list[str]:
    """Every import against the direction (between layers, and between the levels of the
    tf_synchro libraries), every circle, every undeclared binary, every unplaced library."""
    modules = module_files(root)
    graph = {m: imports_of(m, p, modules) for m, p in modules.items()}
    out = []
    for module, path in sorted(modules.items()):
        if (module not in binaries and module not in command_libraries
                and _defines_main(path)):
            out.append(f"{module} defines main() and define_flags() but is not in BINARIES "
                       f"(or COMMAND_LIBRARIES)")
        inside = _in_tf_synchro_libraries(module, binaries)
        if inside and level(module, levels) is None and not _defines_main(path):
            out.append(f"{module} is in no level of TF_SYNCHRO_LEVELS (place it)")
        for target in sorted(graph[module]):
            if target in binaries:
                out.append(f"{module} imports the binary {target} (run it by name instead)")
            elif layer(target, binaries) > layer(module, binaries):
                out.append(f"{module} ({LAYER_NAMES[layer(module, binaries)]}) imports "
                           f"{target} ({LAYER_NAMES[layer(target, binaries)]}), a higher layer")
            elif (inside and _in_tf_synchro_libraries(target, binaries)
                  and None not in (level(module, levels), level(target, levels))
                  and level(target, levels) > level(module, levels)):
                out.append(f"{module} ({levels[level(module, levels)][0]}) imports {target} "
                           f"({levels[level(target, levels)][0]}), a higher level of "
                           f"tf_synchro")
    out += [f"import circle: {' <-> '.join(c)}" for c in _cycles(graph)]
    return out


def test_binaries_exist():
    modules = module_files(ROOT)
    assert sorted((BINARIES | COMMAND_LIBRARIES) - set(modules)) == []
    assert all(_defines_main(modules[b]) for b in BINARIES | COMMAND_LIBRARIES)


def test_imports_go_one_way():
    assert violations(ROOT) == []


def _tree(root, files: dict) -> str:
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
    return str(root)


_CLEAN = {
    "tfrecords_tools/__init__.py": "from tfrecords_tools.runtime import quiet_tf\n",
    "tfrecords_tools/runtime/__init__.py": "",
    "tfrecords_tools/runtime/quiet_tf.py": "import os\n",
    "tfrecords_tools/runtime/cli.py": "from . import quiet_tf\n",
    "tfrecords_tools/dataset_io.py": "from tfrecords_tools.runtime import cli\n",
    "tfrecords_tools/inspect.py": """\
        from tfrecords_tools import dataset_io
        def define_flags(): pass
        def main(argv): pass
        """,
    "tf_synchro/__init__.py": "",
    "tf_synchro/tasks/__init__.py": "",
    "tf_synchro/tasks/pose3d.py": "import tfrecords_tools.dataset_io\n",
    "tf_synchro/tasks/losses.py": "",
    "tf_synchro/deploy/__init__.py": "",
    "tf_synchro/deploy/artefacts.py": "from tf_synchro.tasks import pose3d\n",
    "tf_synchro/evaluate.py": """\
        from tf_synchro.tasks import pose3d
        def define_flags(): pass
        def main(argv): pass
        """,
}
_FAKE_BINARIES = frozenset({"tfrecords_tools.inspect", "tf_synchro.evaluate"})


def test_checker_accepts_a_clean_tree(tmp_path):
    assert violations(_tree(tmp_path, _CLEAN), _FAKE_BINARIES, frozenset()) == []


def test_checker_finds_each_kind_of_violation(tmp_path):
    bad = dict(_CLEAN)
    # runtime -> dataset tools, in a function (a late import still counts).
    bad["tfrecords_tools/runtime/cli.py"] = """\
        def f():
            from tfrecords_tools import dataset_io
        """
    # A library importing a binary, and a circle through a relative import.
    bad["tf_synchro/tasks/pose3d.py"] = "from tf_synchro import evaluate\nfrom . import metrics\n"
    bad["tf_synchro/tasks/metrics.py"] = "from tf_synchro.tasks import pose3d\n"
    # dataset tools -> tf_synchro.
    bad["tfrecords_tools/schema.py"] = "import tf_synchro.tasks.metrics\n"
    # A binary nobody declared.
    bad["tf_synchro/predict.py"] = "def define_flags(): pass\ndef main(argv): pass\n"
    # Inside tf_synchro: a task importing deploy, and a library placed in no level.
    bad["tf_synchro/tasks/losses.py"] = "from tf_synchro.deploy import artefacts\n"
    bad["tf_synchro/helpers.py"] = ""
    found = violations(_tree(tmp_path, bad), _FAKE_BINARIES, frozenset())
    assert found == [
        "tf_synchro.helpers is in no level of TF_SYNCHRO_LEVELS (place it)",
        "tf_synchro.predict defines main() and define_flags() but is not in BINARIES "
        "(or COMMAND_LIBRARIES)",
        "tf_synchro.tasks.losses (tasks) imports tf_synchro.deploy.artefacts (deploy, suite), "
        "a higher level of tf_synchro",
        "tf_synchro.tasks.pose3d imports the binary tf_synchro.evaluate (run it by name "
        "instead)",
        "tfrecords_tools.runtime.cli (runtime) imports tfrecords_tools.dataset_io (dataset "
        "tools), a higher layer",
        "tfrecords_tools.schema (dataset tools) imports tf_synchro.tasks.metrics (tf_synchro "
        "libraries), a higher layer",
        "import circle: tf_synchro.evaluate <-> tf_synchro.tasks.metrics <-> "
        "tf_synchro.tasks.pose3d",
        "import circle: tfrecords_tools.dataset_io <-> tfrecords_tools.runtime.cli",
    ]
