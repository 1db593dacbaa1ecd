/**
 * Pod Security Standards, profile "restricted" (baseline included), as the
 * Kubernetes docs list the controls (kubernetes.io/docs/concepts/security/
 * pod-security-standards). Pod Security admission enforces exactly these on a
 * namespace labelled `pod-security.kubernetes.io/enforce: restricted`;
 * `restrictedViolations` answers what it would refuse in one pod spec.
 */
import type { Doc } from './apps';

const RESTRICTED_VOLUME_TYPES = new Set(['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret']);
const SAFE_SYSCTLS = new Set([
  'kernel.shm_rmid_forced',
  'net.ipv4.ip_local_port_range',
  'net.ipv4.ip_unprivileged_port_start',
  'net.ipv4.tcp_syncookies',
  'net.ipv4.ping_group_range',
  'net.ipv4.ip_local_reserved_ports',
  'net.ipv4.tcp_keepalive_time',
  'net.ipv4.tcp_fin_timeout',
  'net.ipv4.tcp_keepalive_intvl',
  'net.ipv4.tcp_keepalive_probes',
]);
const SELINUX_TYPES = new Set([undefined, '', 'container_t', 'container_init_t', 'container_kvm_t', 'container_engine_t']);

export function restrictedViolations(pod: Doc): string[] {
  const v: string[] = [];
  const podSc = pod.securityContext ?? {};
  const containers: Doc[] = [...(pod.initContainers ?? []), ...(pod.containers ?? []), ...(pod.ephemeralContainers ?? [])];

  // baseline
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) v.push('host namespaces (hostNetwork/hostPID/hostIPC)');
  if (podSc.windowsOptions?.hostProcess) v.push('pod: windowsOptions.hostProcess');
  for (const vol of pod.volumes ?? []) {
    if (vol.hostPath) v.push(`volume ${vol.name}: hostPath`);
    const type = Object.keys(vol).find((k) => k !== 'name');
    if (type && !RESTRICTED_VOLUME_TYPES.has(type)) v.push(`volume ${vol.name}: type ${type} is not allowed`);
  }
  for (const sysctl of podSc.sysctls ?? []) if (!SAFE_SYSCTLS.has(sysctl.name)) v.push(`sysctl ${sysctl.name}`);
  const checkSelinux = (where: string, o: Doc) => {
    if (!o) return;
    if (!SELINUX_TYPES.has(o.type)) v.push(`${where}: seLinuxOptions.type ${o.type}`);
    if (o.user || o.role) v.push(`${where}: seLinuxOptions.user/role`);
  };
  checkSelinux('pod', podSc.seLinuxOptions);
  const appArmorOk = (p: Doc) => !p || p.type === 'RuntimeDefault' || p.type === 'Localhost';
  if (!appArmorOk(podSc.appArmorProfile)) v.push('pod: appArmorProfile');

  // restricted, pod level
  const podRunAsNonRoot = podSc.runAsNonRoot === true;
  const seccompOk = (p: Doc) => p?.type === 'RuntimeDefault' || p?.type === 'Localhost';
  const podSeccomp = podSc.seccompProfile;
  if (podSeccomp && !seccompOk(podSeccomp)) v.push(`pod: seccompProfile.type ${podSeccomp.type}`);
  if (podSc.runAsUser === 0) v.push('pod: runAsUser 0');

  for (const c of containers) {
    const sc = c.securityContext ?? {};
    const where = `container ${c.name}`;
    if (sc.privileged) v.push(`${where}: privileged`);
    if (sc.windowsOptions?.hostProcess) v.push(`${where}: windowsOptions.hostProcess`);
    if (sc.procMount && sc.procMount !== 'Default') v.push(`${where}: procMount ${sc.procMount}`);
    for (const port of c.ports ?? []) if (port.hostPort) v.push(`${where}: hostPort ${port.hostPort}`);
    checkSelinux(where, sc.seLinuxOptions);
    if (!appArmorOk(sc.appArmorProfile)) v.push(`${where}: appArmorProfile`);
    if (sc.allowPrivilegeEscalation !== false) v.push(`${where}: allowPrivilegeEscalation must be false`);
    if (!(sc.runAsNonRoot === true || (podRunAsNonRoot && sc.runAsNonRoot !== false))) v.push(`${where}: runAsNonRoot must be true`);
    if (sc.runAsUser === 0) v.push(`${where}: runAsUser 0`);
    if (sc.seccompProfile ? !seccompOk(sc.seccompProfile) : !seccompOk(podSeccomp)) v.push(`${where}: seccompProfile must be RuntimeDefault or Localhost`);
    if (!(sc.capabilities?.drop ?? []).includes('ALL')) v.push(`${where}: capabilities.drop must include ALL`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') v.push(`${where}: capabilities.add ${cap}`);
  }
  return v;
}
