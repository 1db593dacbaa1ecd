// Copies non-TypeScript assets (Lua scripts, SQL files) from src/ to dist/,
// keeping their relative paths. Usage: node copy-assets.js <from> <to> <ext>...
const fs = require('node:fs');
const path = require('node:path');

const [from, to, ...exts] = process.argv.slice(2);
function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) walk(full);
    else if (exts.some((ext) => entry.name.endsWith(ext))) {
      const target = path.join(to, path.relative(from, full));
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.copyFileSync(full, target);
    }
  }
}
walk(from);
