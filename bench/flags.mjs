// Command-line flags of the bench scripts: `--name value`, `--name=value`, or a bare
// `--name` (true). `positive` refuses anything but a positive number.
export function cliFlags(argv = process.argv.slice(2)) {
  function flag(name, fallback) {
    const eq = argv.find((a) => a.startsWith(`--${name}=`));
    if (eq) return eq.slice(name.length + 3);
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return fallback;
    const v = argv[i + 1];
    return v === undefined || v.startsWith('--') ? true : v;
  }
  function positive(name, fallback) {
    const v = Number(flag(name, fallback));
    if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: a positive number, not ${flag(name, fallback)}`);
    return v;
  }
  return { argv, flag, positive };
}
