/**
 * A command's action, imported when the command runs. Defining the commands (all of them, for `--help`,
 * `--version` and usage errors) then loads commander and the option rules only: an action's module pulls in
 * ONNX Runtime, SQLite, sharp or the server, and `clipdex --version` paid ~0.5 s to load them all.
 */
// biome-ignore lint/suspicious/noExplicitAny: commander passes each action its own argument list
type Action = (...args: any[]) => unknown;

export function lazyAction<M extends { [P in K]: Action }, K extends keyof M & string>(load: () => Promise<M>, name: K): (...args: Parameters<M[K]>) => Promise<void> {
  return async (...args) => {
    await (await load())[name](...args);
  };
}
