#!/usr/bin/env python3
"""The library's public surface, from rustdoc's JSON output: the crate root's names, the items a
program can reach (types, functions, methods, fields, variants), and every crate type that a
public signature mentions but no public path names (a user could not write it down). Exits 1
when there is such a type (a sealed trait's `Sealed` supertrait is unnameable on purpose), or
when the crate root has more than MAX_ROOT_NAMES names: the root holds what a program works with
(open, inspect, render, encode, limits, errors, options) and the modules hold the details, so a
new name goes into the module of its job unless most programs need it; raising the budget is a
decision to make in review, not a side effect of adding an item.

It also exits 1 when the stable surface has more than MAX_ITEMS items, counted without struct
fields and enum variants (types, functions, methods, constants, modules): options are plain
structs whose fields a program sets, not a setter per field, and what only gsimg's tools, tests
and benchmarks call is public with the `unstable` feature alone (`unstable_pub!` in lib.rs).

    cargo +nightly rustdoc --lib -- -Z unstable-options --output-format json
    python3 scripts/public-surface.py target/doc/gsimg.json
"""
import json
import sys
from collections import Counter

MAX_ROOT_NAMES = 32
MAX_ITEMS = 230

doc = json.load(open(sys.argv[1]))
index = doc["index"]


def item(i):
    return index.get(str(i))


def kind(x):
    return next(iter(x["inner"]))


named = {}  # item id -> its public path
reach = set()  # every reachable item, members included
root_names = []
method_of = {}  # method id -> its type's public path


def visit_module(mid, path, is_root=False):
    for c in item(mid)["inner"]["module"]["items"]:
        x = item(c)
        if x is None:
            continue
        if kind(x) == "use":
            u = x["inner"]["use"]
            target = item(u["id"]) if u["id"] is not None else None
            if u["is_glob"]:
                if target and kind(target) == "module":
                    visit_module(u["id"], path)
                continue
            if target is None:  # a re-export of another crate's item
                if is_root:
                    root_names.append(u["name"])
                continue
            add(u["id"], path + [u["name"]], is_root)
        else:
            add(c, path + [x["name"]], is_root)


def add(i, path, is_root):
    x = item(i)
    if x is None:
        return
    if is_root:
        root_names.append(path[-1])
    if i in named:
        return
    named[i] = "::".join(path)
    reach.add(i)
    k = kind(x)
    inner = x["inner"][k]
    if k == "module":
        visit_module(i, path)
    for impl_id in inner.get("impls") or [] if isinstance(inner, dict) else []:
        im = item(impl_id)
        if im is None or im["inner"]["impl"]["trait"] is not None:
            continue
        for m in im["inner"]["impl"]["items"]:
            mm = item(m)
            if mm and mm["visibility"] == "public":
                reach.add(m)
                method_of[m] = named[i]
                named.setdefault(m, named[i] + "::" + (mm["name"] or "?"))
    if k == "struct" and isinstance(inner["kind"], dict):
        sk = inner["kind"]
        fields = sk.get("plain", {}).get("fields", []) + [f for f in sk.get("tuple", []) if f is not None]
        reach.update(fields)
    if k == "enum":
        for v in inner["variants"]:
            reach.add(v)
            named.setdefault(v, named[i] + "::" + item(v)["name"])
            vk = item(v)["inner"]["variant"]["kind"]
            if isinstance(vk, dict):
                reach.update(vk.get("struct", {}).get("fields", []))
                reach.update(f for f in vk.get("tuple", []) if f is not None)
    if k == "trait":
        reach.update(inner["items"])


visit_module(doc["root"], [item(doc["root"])["name"]], True)
types = {i for i in named if kind(item(i)) in ("struct", "enum", "trait", "type_alias", "union")}
unnamed = {}


def walk(t, where):
    if isinstance(t, dict):
        ref = t.get("resolved_path")
        if ref is None and isinstance(t.get("trait"), dict) and "id" in t["trait"]:
            ref = t["trait"]
        if ref:
            p = doc["paths"].get(str(ref["id"]))
            if p and p["crate_id"] == 0 and ref["id"] not in types:
                unnamed.setdefault("::".join(p["path"]), set()).add(where)
        for v in t.values():
            walk(v, where)
    elif isinstance(t, list):
        for v in t:
            walk(v, where)


for i in reach:
    x = item(i)
    k = kind(x)
    inner = x["inner"][k]
    where = named.get(i, x.get("name"))
    if k == "function":
        walk([inner["sig"], inner["generics"]], where)
    elif k in ("struct_field", "variant"):
        walk(inner, where)
    elif k in ("struct", "enum", "union"):
        walk(inner.get("generics"), where)
    elif k == "trait":
        walk([inner.get("generics"), inner.get("bounds")], where)
    elif k in ("type_alias", "constant"):
        walk([inner.get("generics"), inner.get("type")], where)

kinds = Counter(kind(item(i)) for i in reach)
items = sum(n for k, n in kinds.items() if k not in ("struct_field", "variant"))
methods = Counter(method_of.values())
print(f"root names: {len(root_names)} (at most {MAX_ROOT_NAMES}): {', '.join(sorted(root_names))}")
print(f"reachable items: {len(reach)} ({', '.join(f'{k} {n}' for k, n in kinds.most_common())})")
print(f"items without fields and variants: {items} (at most {MAX_ITEMS}); most methods: "
      + ", ".join(f"{t} {n}" for t, n in methods.most_common(5)))
print("unnameable types in public signatures:" + ("" if unnamed else " none"))
bad = 0
for name in sorted(unnamed):
    sealed = name.split("::")[-1] == "Sealed"
    bad += not sealed
    print(f"  {name}{' (a sealed trait, on purpose)' if sealed else ''} <- {', '.join(sorted(unnamed[name]))}")
over = len(root_names) > MAX_ROOT_NAMES
if over:
    print(f"the crate root has {len(root_names)} names, over the budget of {MAX_ROOT_NAMES}: move the new ones into their module")
too_many = items > MAX_ITEMS
if too_many:
    print(f"the public surface has {items} items, over the budget of {MAX_ITEMS}: make internal ones crate-private or `unstable_pub!`, options fields rather than setters")
sys.exit(1 if bad or over or too_many else 0)
