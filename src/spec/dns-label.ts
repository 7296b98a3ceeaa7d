/** Longest cluster or member name: leaves room in DNS labels (63) and etcd keys for suffixes. */
export const MAX_NAME_LENGTH = 40;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

/**
 * Why `name` is not a valid cluster, member or instance-set name, or undefined when it is: lowercase
 * letters, digits and '-', starting and ending with a letter or digit, at most `maxLength` characters.
 */
export function dnsLabelProblem(name: string, maxLength = MAX_NAME_LENGTH): string | undefined {
  if (name.length > maxLength) return `must be at most ${maxLength} characters (got ${name.length}: ${JSON.stringify(name)})`;
  if (!DNS_LABEL.test(name)) {
    return `must contain only lowercase letters, digits and '-', and start and end with a letter or digit (got ${JSON.stringify(name)})`;
  }
  return undefined;
}
