/**
 * What a stdio child inherits from the gateway's environment: what a process needs to run (the MCP SDK's
 * stdio transport list, plus locale, time zone and the temporary directory), never the rest. The gateway's
 * own environment holds its secrets (GATEHOUSE_SECRET, the storage URL with its password, OAUTH_* client
 * secrets), and a tool such as server-everything's `get-env` would hand them to any signed-in user.
 */
const INHERITED =
  process.platform === 'win32'
    ? [
        'APPDATA',
        'COMSPEC',
        'HOMEDRIVE',
        'HOMEPATH',
        'LOCALAPPDATA',
        'PATH',
        'PATHEXT',
        'PROCESSOR_ARCHITECTURE',
        'PROGRAMDATA',
        'PROGRAMFILES',
        'SYSTEMDRIVE',
        'SYSTEMROOT',
        'TEMP',
        'TMP',
        'USERNAME',
        'USERPROFILE',
        'WINDIR',
      ]
    : ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER', 'TMPDIR', 'TZ', 'LANG', 'LANGUAGE']

/** The allow-listed part of `parent` (and its `LC_*` locale settings), then the configuration's `env:` over it. */
export function childEnvironment(
  parent: NodeJS.ProcessEnv,
  configured: Readonly<Record<string, string>>,
): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(parent)) {
    const inherited = INHERITED.includes(name.toUpperCase()) || name.startsWith('LC_')
    // A value starting with `()` is an exported shell function, a known injection vector (the SDK skips them too).
    if (inherited && value !== undefined && !value.startsWith('()')) env[name] = value
  }
  return { ...env, ...configured }
}
