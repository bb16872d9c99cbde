"""A net definition checked without building it: the mistakes Caffe stops on at ``Net::Init``.

How the official code finds them (``src/caffe/net.cpp``): ``FilterNet`` keeps the layers whose
``include`` / ``exclude`` rules meet the NetState (``StateMeetsRule``: phase, min/max level,
stages); ``Init`` then walks them in file order. ``AppendBottom`` stops with "Unknown bottom
blob" when a bottom is not a top of an earlier layer (a misspelling, a misordered net, or a
cycle: Caffe has no back edges, every blob must exist before it is read); ``AppendTop`` stops
with "produced by multiple sources" when a top name is taken and the layer is not in place
(top i equal to bottom i); ``LayerRegistry::CreateLayer`` stops with "Unknown layer type".

Where we differ: Caffe stops at the first problem of the one phase it builds; :func:`check_net`
lists every problem of both phases (level 0, no stages: Caffe's default NetState), naming the
layer, and suggests the nearest known name, so ``fcn-port inspect`` can warn about all of them
at once. The layer types known are passed in (the registry lives above this package).
:func:`meets_rule` is ``StateMeetsRule``; :mod:`fcn_port.port.net` filters with it too.
"""
import difflib

from .proto import caffe_pb2

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def meets_rule(rule, phase, level=0, stages=()):
    """Caffe's ``StateMeetsRule`` for a NetStateRule and the state (phase name, level, stages)."""
    if rule.HasField("phase") and rule.phase != PHASES[phase]:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    return all(s in stages for s in rule.stage) and not any(s in stages for s in rule.not_stage)


def kept(lp, phase, level=0, stages=()):
    """Whether ``FilterNet`` keeps layer ``lp`` (include rules: any met; else no exclude met)."""
    if lp.include:
        return any(meets_rule(r, phase, level, stages) for r in lp.include)
    return not any(meets_rule(r, phase, level, stages) for r in lp.exclude)


def _near(name, choices):
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def phase_problems(net, phase, level=0, stages=()):
    """The problems of the net Caffe builds for this state, in file order."""
    layers = [(i, lp) for i, lp in enumerate(net.layer) if kept(lp, phase, level, stages)]
    made = {t: (-1, "the net's inputs") for t in net.input}
    later = {}
    for i, lp in layers:
        for t in lp.top:
            later.setdefault(t, lp.name)
    problems = []
    for i, lp in layers:
        where = f"layer #{i} '{lp.name}' ({lp.type or 'no type'})"
        for b in lp.bottom:
            if b in made:
                continue
            if b in later and later[b] != lp.name:
                problems.append(f"{where}: bottom '{b}' is made only by a later layer "
                                f"'{later[b]}' (a cycle or a misordered net: Caffe needs every "
                                "bottom to be a top of an earlier layer)")
            elif b in later:
                problems.append(f"{where}: bottom '{b}' is its own top and no earlier layer "
                                "makes it (a cycle)")
            else:
                near = _near(b, made) if len(problems) < 20 else ""  # difflib is O(names)
                problems.append(f"{where}: bottom '{b}' is not a top of any earlier layer{near}")
        for k, t in enumerate(lp.top):
            in_place = k < len(lp.bottom) and lp.bottom[k] == t
            if t in made and not in_place:
                problems.append(f"{where}: top '{t}' is already made by '{made[t][1]}' and this "
                                "layer is not in place (Caffe: produced by multiple sources)")
            made.setdefault(t, (i, lp.name))
    return problems


def check_net(net, known_types=None):
    """Every problem Caffe would stop on, as one line each (see the module docstring)."""
    problems = []
    if known_types is not None:
        known = set(known_types)
        for i, lp in enumerate(net.layer):
            if lp.type not in known:
                near = _near(lp.type, known) if len(problems) < 20 else ""
                problems.append(f"layer #{i} '{lp.name}': unknown type '{lp.type}'{near}")
    if net.layers:
        return problems  # V1 layers: the caller checks the upgraded net
    by_phase = {phase: phase_problems(net, phase) for phase in PHASES}
    found = {phase: set(lines) for phase, lines in by_phase.items()}  # linear: no list lookups
    for p in dict.fromkeys(by_phase["TRAIN"] + by_phase["TEST"]):
        only = [ph for ph in PHASES if p in found[ph]]
        problems.append(p if len(only) == 2 else f"{p} (in {only[0]})")
    return problems
