// Runs compile_bytecode.py in CPython 3.12 compiled to WebAssembly (Pyodide), for build machines
// with Node.js but no python3.12. Each directory is mounted into Pyodide's file system as-is, so
// the .pyc files land beside the sources on the host.
//   node pyodide_compile.mjs DIR [DIR ...]
import { loadPyodide } from "pyodide";
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

const script = readFileSync(fileURLToPath(new URL("./compile_bytecode.py", import.meta.url)), "utf8");
const pyodide = await loadPyodide();
const mounted = process.argv.slice(2).map((dir, i) => {
  const point = `/layer${i}`;
  pyodide.FS.mkdirTree(point);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: realpathSync(dir) }, point);
  return point;
});
pyodide.setStdout({ batched: (line) => console.log(line) });
pyodide.globals.set("compile_args", pyodide.toPy(mounted));
pyodide.globals.set("compile_labels", pyodide.toPy(Object.fromEntries(mounted.map((m, i) => [m, process.argv[2 + i]]))));
const status = pyodide.runPython(`${script.replace('if __name__ == "__main__":', "if False:")}
main(list(compile_args), dict(compile_labels))`);
process.exit(status);
