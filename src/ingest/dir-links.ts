/**
 * What to do with a symbolic link that points at a directory. Shared by the scanner and the
 * watcher so both see the same tree: chokidar left to itself follows a link to an ancestor
 * until the kernel says ELOOP (40 levels deep, hundreds of duplicate events and watches).
 */
import { realpathSync } from 'node:fs';
import { dirname, sep } from 'node:path';

/**
 * - 'follow': the target lies outside the root; its photos are reachable only through the link.
 * - 'loop': the target is the folder holding the link or one of its ancestors (or the root's):
 *   following it would walk the same folders again forever. Reported as a problem.
 * - 'alias': the target is elsewhere inside the root, which the walk reaches by its real path;
 *   following it would index every photo there twice under two names. Skipped silently.
 */
export type DirLinkAction = 'follow' | 'loop' | 'alias';

function isInside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

/**
 * @param target real path of the directory the link resolves to
 * @param linkParentReal real path of the folder that holds the link
 * @param realRoot real path of the watched or scanned root
 */
export function classifyDirLink(target: string, linkParentReal: string, realRoot: string): DirLinkAction {
  if (isInside(linkParentReal, target) || isInside(realRoot, target)) return 'loop';
  if (isInside(target, realRoot)) return 'alias';
  return 'follow';
}

/**
 * Synchronous variant for chokidar's `ignored` callback, which cannot wait: the action for a
 * path known to be a directory that is a symlink, or null when the link cannot be resolved.
 */
export function classifyDirLinkSync(linkPath: string, realRoot: string): DirLinkAction | null {
  try {
    return classifyDirLink(realpathSync(linkPath), realpathSync(dirname(linkPath)), realRoot);
  } catch {
    return null;
  }
}
