using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>
/// A real Kestrel backend on 127.0.0.1 (HTTP/1.1) that answers every request with its name: which backend served it;
/// or, once <see cref="Status"/> is set to an error, with that status and no body.
/// </summary>
internal sealed record NamedBackend(WebApplication App, int Port) : IAsyncDisposable
{
    private int _status = 200;

    /// <summary>Gets or sets the status every request gets from now on (200 answers with the name).</summary>
    public int Status
    {
        get => Volatile.Read(ref _status);
        set => Volatile.Write(ref _status, value);
    }

    public static async Task<NamedBackend> StartAsync(string name)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
        var app = builder.Build();
        NamedBackend? self = null;
        app.Run(context =>
        {
            var status = self?.Status ?? 200;
            context.Response.StatusCode = status;
            return status == 200 ? context.Response.WriteAsync(name, context.RequestAborted) : Task.CompletedTask;
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        self = new NamedBackend(app, new Uri(address).Port);
        return self;
    }

    public ValueTask DisposeAsync() => App.DisposeAsync();
}
