using System.Collections.Immutable;
using Mesh.ControlPlane.Model;

namespace Mesh.ControlPlane.Security;

/// <summary>Secure naming: which identities may serve a service. Written as a static extension so it reads <c>SpiffeId.AllowedIdentities(...)</c>.</summary>
internal static class ServiceIdentities
{
    extension(SpiffeId)
    {
        /// <summary>
        /// The identities a service's workloads may run as: its <c>spec.subjectAltNames</c>, else the
        /// convention <c>spiffe://&lt;td&gt;/ns/&lt;namespace&gt;/sa/&lt;ServiceEntry name&gt;</c>.
        /// </summary>
        public static ImmutableArray<string> AllowedIdentities(ServiceEntryModel service, string trustDomain)
        {
            ArgumentNullException.ThrowIfNull(service);
            return service.SubjectAltNames.IsEmpty
                ? [new WorkloadIdentity(trustDomain, service.Namespace, service.Name).SpiffeId]
                : service.SubjectAltNames;
        }
    }
}
