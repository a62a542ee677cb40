// Runs compile_bytecode.py in CPython 3.12 compiled to WebAssembly (Pyodide), for build machines
// with Node.js but no python3.12. Each directory is mounted into Pyodide's file system at its own
// absolute path, so the .pyc files land beside the sources on the host and the report names them.
//   node pyodide_compile.mjs DIR [DIR ...]
import { loadPyodide } from "pyodide";
import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";

const pyodide = await loadPyodide();
pyodide.FS.writeFile(
  "/compile_bytecode.py",
  readFileSync(fileURLToPath(new URL("./compile_bytecode.py", import.meta.url)), "utf8"),
);
const dirs = process.argv.slice(2).map((dir) => {
  const path = realpathSync(dir);
  pyodide.FS.mkdirTree(path);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: path }, path);
  return path;
});
pyodide.setStdout({ batched: (line) => console.log(line) });
pyodide.globals.set("compile_dirs", pyodide.toPy(dirs));
const status = pyodide.runPython(`import sys
sys.path.insert(0, "/")
import compile_bytecode
compile_bytecode.main(list(compile_dirs))`);
process.exit(status);
