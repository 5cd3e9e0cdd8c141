"""Small steps of hack/release.sh that are easier to get right in Python than in shell.

    artifacts.py sbom-merge A.json B.json > OUT.json
        one CycloneDX SBOM from the per-target SBOMs cargo-cyclonedx writes: the union of their
        components and dependency edges (the arm64 binary lacks a few x86-only crates)
    artifacts.py sbom-covers SBOM.json BINARY...
        fail unless the SBOM lists every crate the binaries say they link (their `.dep-v0`
        section from cargo-auditable: zlib-compressed JSON) and nothing else but the build-time
        crates (proc macros) those lists name, so the SBOM describes what ships
    artifacts.py pin-chart VALUES.yaml DIGEST
        set the chart's image.digest default (the `digest: ""` line under `image:`) to DIGEST
"""

import json
import re
import struct
import sys
import zlib


def sbom_merge(paths):
    boms = [json.load(open(p)) for p in paths]
    merged = boms[0]
    components = {c["bom-ref"]: c for bom in boms for c in bom.get("components", [])}
    merged["components"] = [components[k] for k in sorted(components)]
    edges = {}
    for bom in boms:
        for dep in bom.get("dependencies", []):
            edges.setdefault(dep["ref"], set()).update(dep.get("dependsOn", []))
    merged["dependencies"] = [
        {"ref": ref, "dependsOn": sorted(edges[ref])} for ref in sorted(edges)
    ]
    merged["metadata"]["properties"] = [
        prop for bom in boms for prop in bom["metadata"].get("properties", [])
    ]
    # The operator's own reference names the checkout's path (path+file:///...): name it by its
    # package URL instead, so the SBOM does not depend on where the release was built.
    root = merged["metadata"]["component"]
    text = json.dumps(merged, indent=2)
    text = text.replace(json.dumps(root["bom-ref"]), json.dumps(f"pkg:cargo/{root['name']}@{root['version']}"))
    sys.stdout.write(text + "\n")


def elf_section(path, wanted):
    """The bytes of section `wanted` of a little-endian ELF64 file."""
    data = open(path, "rb").read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        sys.exit(f"{path}: not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        # name, type, flags, addr, offset, size
        return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)

    names_off, names_size = header(shstrndx)[4], header(shstrndx)[5]
    names = data[names_off:names_off + names_size]
    for i in range(shnum):
        name_idx, _, _, _, off, size = header(i)
        name = names[name_idx:names.index(b"\0", name_idx)].decode()
        if name == wanted:
            return data[off:off + size]
    sys.exit(f"{path}: no {wanted} section (was it built with cargo auditable?)")


def sbom_covers(sbom_path, binaries):
    sbom = json.load(open(sbom_path))
    listed = {(c["name"], c["version"]) for c in sbom.get("components", [])}
    root = sbom["metadata"]["component"]
    linked, build_time = set(), set()
    for binary in binaries:
        audit = json.loads(zlib.decompress(elf_section(binary, ".dep-v0")))
        for pkg in audit["packages"]:
            if pkg.get("root"):
                if pkg["name"] != root["name"] or pkg["version"] != root["version"]:
                    sys.exit(f"{binary}: built from {pkg['name']} {pkg['version']}, the SBOM describes {root['name']} {root['version']}")
            elif pkg.get("kind", "runtime") == "runtime":
                linked.add((pkg["name"], pkg["version"]))
            else:
                build_time.add((pkg["name"], pkg["version"]))
    # Every crate linked into a binary must be listed. The SBOM may also list crates the
    # binaries record as build-time (proc macros and what they use: they write code that is in
    # the binary, though they are not linked), but nothing the binaries do not know of.
    missing = linked - listed
    unknown = listed - linked - build_time
    for name, version in sorted(missing):
        print(f"in a binary, not in the SBOM: {name} {version}", file=sys.stderr)
    for name, version in sorted(unknown):
        print(f"in the SBOM, in no binary's dependency list: {name} {version}", file=sys.stderr)
    if missing or unknown:
        sys.exit("the SBOM does not describe the binaries")
    print(f"the SBOM lists the {len(linked)} crates linked into the binaries (their .dep-v0) "
          f"and {len(listed - linked)} proc macros and crates they use at build time")


def pin_chart(values_path, digest):
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        sys.exit(f"{digest}: not a sha256 digest")
    lines = open(values_path).read().split("\n")
    in_image, done = False, False
    for i, line in enumerate(lines):
        if re.match(r"^\S", line):
            in_image = line.startswith("image:")
        elif in_image and re.fullmatch(r'  digest: ""', line):
            lines[i] = f'  digest: "{digest}"'
            done = True
    if not done:
        sys.exit(f'{values_path}: no `digest: ""` under `image:`')
    open(values_path, "w").write("\n".join(lines))


def main(argv):
    if len(argv) >= 3 and argv[0] == "sbom-merge":
        sbom_merge(argv[1:])
    elif len(argv) >= 3 and argv[0] == "sbom-covers":
        sbom_covers(argv[1], argv[2:])
    elif len(argv) == 3 and argv[0] == "pin-chart":
        pin_chart(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
