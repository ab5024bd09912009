using System.Security.Claims;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace Mesh.Client.Security;

/// <summary>
/// First in the request pipeline: exposes the connection's <see cref="IMeshPeerIdentityFeature"/> on the request and adds
/// a <c>mesh-mtls</c> identity with the peer's SPIFFE ID, namespace and service account to <c>HttpContext.User</c>.
/// </summary>
internal sealed class MeshPeerIdentityStartupFilter : IStartupFilter
{
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.Use(static (context, next) =>
        {
            if (context.Features.Get<IMeshPeerIdentityFeature>() is { SpiffeId: { } spiffeId } peer)
            {
                context.Features.Set(peer);
                var claims = new List<Claim>(3) { new(MeshClaimTypes.SpiffeId, spiffeId) };
                if (peer.PeerNamespace is { } ns)
                {
                    claims.Add(new Claim(MeshClaimTypes.Namespace, ns));
                }

                if (peer.PeerServiceAccount is { } account)
                {
                    claims.Add(new Claim(MeshClaimTypes.ServiceAccount, account));
                }

                context.User.AddIdentity(new ClaimsIdentity(claims, MeshClaimTypes.AuthenticationType, MeshClaimTypes.SpiffeId, null));
            }

            return next(context);
        });
        next(app);
    };
}
